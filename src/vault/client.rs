//! TODO(issue 2): see the helper's brief.
