from ymsync.cli import main

main()
