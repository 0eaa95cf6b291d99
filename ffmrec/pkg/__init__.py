"""Personal knowledge graphs: JSON-LD with schema.org types, snapshots per turn, sub-PKG retrieval."""
