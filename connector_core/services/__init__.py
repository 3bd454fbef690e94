"""Application services (use cases): load an aggregate, act, save it and its events in one
unit of work."""
