"""`connc validate`: every check of spec section 3, keyless unless asked to decrypt."""
