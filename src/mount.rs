//! Mount a filesystem core with fuser: options, worker threads, kernel cache invalidation.
