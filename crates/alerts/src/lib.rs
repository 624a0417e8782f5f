//! SyncGuard alerts (skeleton; being built).
