"""Model families (one file each) and the registry that describes every model."""
