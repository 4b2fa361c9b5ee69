"""`connc render`: a pipeline's credential bundle, as the files its tools read."""
