from tsunagu_servicehost import main

from tsunagu_intake.bootstrap import build_service

main(build_service())
