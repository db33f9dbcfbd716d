from torch_intnn.cli import main

main()
