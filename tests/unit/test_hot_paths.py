"""The hand-optimised hot paths give exactly what the straightforward code gives."""

import random
import string
import uuid

from aiokafka.partitioner import DefaultPartitioner

from schemas.ids import NAMESPACE, derive_transaction_id
from processor.stream.publishing import partition_for


def test_partition_is_the_default_partitioners() -> None:
    partitions = list(range(7))
    for i in range(2000):
        key = f"proj/ref-{i}".encode()
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_transaction_id_is_uuid5() -> None:
    rng = random.Random(3)
    alphabet = string.printable + "éü漢\U0001f600"
    for _ in range(3000):
        project = "".join(rng.choices(alphabet, k=rng.randrange(1, 30)))
        reference = "".join(rng.choices(alphabet, k=rng.randrange(1, 128)))
        expected = str(uuid.uuid5(NAMESPACE, f"transaction:{project}:{reference}"))
        assert derive_transaction_id(project_id=project, reference_id=reference) == expected
