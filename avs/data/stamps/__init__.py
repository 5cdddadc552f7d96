"""The embedded `stamps` dataset: built offline from Debian's tuxpaint-stamps-default."""
