//! Plan resolution: everything a launch needs, resolved on the host before anything runs.
