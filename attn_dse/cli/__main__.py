from attn_dse.cli.main import main

main()
