"""The `attn-dse` command line: a thin click layer over the library."""
