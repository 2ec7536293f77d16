from tsunagu_topics.create import main

main()
