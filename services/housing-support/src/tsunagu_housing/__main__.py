from tsunagu_servicehost import main

from tsunagu_housing.bootstrap import build_service

main(build_service())
