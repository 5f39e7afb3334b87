"""Controllers of the Kubernetes twin: pure planning functions plus thin informer-driven loops."""
