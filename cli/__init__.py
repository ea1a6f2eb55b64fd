"""The `nodetap` command line: the top layer, owning every flag and every exit code."""
