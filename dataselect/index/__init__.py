"""Vectors, k-means and faiss indexes over a pool's embeddings (see docs/cluster.md)."""
from dataselect.index.backends import make_assigner
from dataselect.index.kmeans import Clusters, cluster_pool, spherical_kmeans
from dataselect.index.pool_index import PoolIndex
from dataselect.index.vectors import ArrayVectors, StoreVectors, SubsetVectors, sample

__all__ = ["ArrayVectors", "Clusters", "PoolIndex", "StoreVectors", "SubsetVectors", "cluster_pool", "make_assigner", "sample", "spherical_kmeans"]
