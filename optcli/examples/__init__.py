"""Built-in example models and data shipped with optcli."""
