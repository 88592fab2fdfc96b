"""Rank 1 raises inside a function decorated with torch's @record, which writes the
error file fgrun names in TORCHELASTIC_ERROR_FILE; the others wait to be stopped."""
import os
import time

from torch.distributed.elastic.multiprocessing.errors import record


@record
def main():
    if os.environ["RANK"] == "1":
        raise ValueError("boom from rank 1 of the record test")
    time.sleep(100)


main()
