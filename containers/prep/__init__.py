"""The prep job (CPU): read, format, clean, split, optionally tokenize and pack, write Parquet + manifest."""
