"""moto's DynamoDB and Secrets Manager server, one request at a time.

DynamoDB applies every write atomically (a conditional ADD, a transaction).
moto's in-memory models are not thread-safe, and its stock server handles
requests on concurrent threads, so racing writes can interleave there in ways
DynamoDB never allows. Serialising requests restores DynamoDB's semantics
for the concurrency tests. Usage: python moto_serial.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        # The whole response is produced under the lock.
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
