# Insert rate of Milvus over gRPC with pymilvus, for comparison with `retrieve index --store`
# (its own gRPC insert path; REST before 2026-12-02). Same shape as scripts/bench-milvus.sh:
# 256-dimension unit vectors and a sentence per row, auto ids, batches of 5,000, into a new
# collection.
#
#   python3 -m venv /tmp/pmv && /tmp/pmv/bin/pip install pymilvus==2.3.5 numpy "marshmallow<4" "environs<10"
#   scripts/with-milvus.sh /tmp/pmv/bin/python scripts/milvus-grpc-insert.py 200000
import os, sys, time
import numpy as np
from pymilvus import connections, FieldSchema, CollectionSchema, DataType, Collection

host, port = os.environ.get("TWIN_MILVUS", "127.0.0.1:19530").rsplit(":", 1)
connections.connect(host=host, port=port)
dim, n, batch = 256, int(sys.argv[1]) if len(sys.argv) > 1 else 200_000, 5000
fields = [FieldSchema("id", DataType.INT64, is_primary=True, auto_id=True),
          FieldSchema("vector", DataType.FLOAT_VECTOR, dim=dim),
          FieldSchema("sentence", DataType.VARCHAR, max_length=1024)]
c = Collection(f"grpc_{int(time.time())}", CollectionSchema(fields))
rng = np.random.default_rng(0)
v = rng.standard_normal((batch, dim)).astype(np.float32)
v /= np.linalg.norm(v, axis=1, keepdims=True)
s = [f"How do I learn to code quickly, variant {i}?" for i in range(batch)]
t = time.time()
done = 0
while done < n:
    c.insert([v, s])
    done += batch
dt = time.time() - t
print(f"grpc insert: {done} vectors in {dt:.1f} s = {done / dt:.0f} vectors/s")
