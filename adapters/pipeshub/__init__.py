"""The existing Node.js deployment (its etcd and MongoDB), read for the import; never written."""

from adapters.pipeshub.source import PipesHubSource

__all__ = ["PipesHubSource"]
