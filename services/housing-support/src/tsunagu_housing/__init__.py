"""Tsunagu housing-support service: tenancy support cases, stages, check-ins and council members' tasks."""
