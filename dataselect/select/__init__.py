"""Select phase: global, cheap, reads what the score phase wrote. One module per method."""
