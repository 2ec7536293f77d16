from tsunagu_servicehost import main

from tsunagu_partners.bootstrap import build_service

main(build_service())
