from tsunagu_servicehost import main

from tsunagu_referral.bootstrap import build_service

main(build_service())
