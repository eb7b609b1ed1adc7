//! Orphan file deletion and manifest rewriting on real tables (pyiceberg-made and weir-made).
