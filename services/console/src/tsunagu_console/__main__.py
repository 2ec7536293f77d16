from tsunagu_console.bootstrap import main

main()
