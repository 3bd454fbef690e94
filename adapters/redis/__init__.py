"""Redis adapters (``redis.asyncio``): cache and lease lock."""

from adapters.redis.cache import RedisCache, connect_redis, connect_redis_sentinel
from adapters.redis.lock import RedisLeaseLock

__all__ = ["RedisCache", "RedisLeaseLock", "connect_redis", "connect_redis_sentinel"]
