from sparsify.cli.main import main

main()
