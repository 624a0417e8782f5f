//! SyncGuard coordination backends (skeleton; being built).
