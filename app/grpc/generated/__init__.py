"""Generated protobuf / gRPC stubs (do not edit: ``python -m app.grpc.generate`` rewrites them; see README.md).

Every stub registers its descriptors in :data:`POOL`, a pool private to shopinfer, so these ``inference.*``
messages never collide with the identically named ones ``tritonclient.grpc`` puts in protobuf's default pool.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
