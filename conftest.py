pytest_plugins = ["tsunagu_teststack.plugin"]
