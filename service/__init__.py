"""qsite: the backend of epidemic isolation sites."""
