"""File I/O: NIfTI reading (whole gzip stream verified) and writing, case discovery, validation, atomic writes and
output folders that are replaced only by the stage that wrote them."""
