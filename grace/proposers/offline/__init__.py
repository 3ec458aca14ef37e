"""The built-in offline search operator: a typed term grammar over the observation schema,
data-driven features, and generic AST mutation for programs it did not write."""
