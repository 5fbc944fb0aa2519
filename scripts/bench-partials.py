#!/usr/bin/env python3
"""Issue 14 item 3: 1M one-byte partial_message parts of one line over Fluent Forward; prints
the time until every chunk is acked, the agent CPU and the worst /health latency meanwhile.

usage: .venv/bin/python scripts/bench-partials.py target/release/agent [PARTS]
(loopback only; nothing listens on the sink port, so the joined line is never delivered:
the acks, which wait for the line to complete, are what is timed)
"""
import msgpack, socket, subprocess, sys, tempfile, threading, time, os, urllib.request
agent_bin = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
fwd, admin, sink = free_port(), free_port(), free_port()
tmp = tempfile.mkdtemp()
cfg = os.path.join(tmp, "a.toml")
open(cfg, "w").write(f'''memory_limit_mib = 64
[admin]
address = "127.0.0.1:{admin}"
[sources.forward]
address = "127.0.0.1:{fwd}"
max_partial_bytes = 2000000
[sinks.cloudwatch_logs]
log_group = "/p"
endpoint = "http://127.0.0.1:{sink}"
region = "us-east-1"
[metrics]
publish = "none"
''')
env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_EC2_METADATA_DISABLED="true")
agent = subprocess.Popen([agent_bin, "run", "--config", cfg], stderr=subprocess.DEVNULL, env=env)
time.sleep(1.5)
packer = msgpack.Packer(use_bin_type=True)
frames = []
per = 10_000
now = int(time.time())
for start in range(1, N + 1, per):
    entries = b"".join(packer.pack([now, {"log": "x", "partial_message": "true", "partial_id": "p",
        "partial_ordinal": str(i), "partial_last": "true" if i == N else "false"}]) for i in range(start, min(start + per, N + 1)))
    frames.append(packer.pack(["app", entries, {"chunk": f"c{start}"}]))
def poll(port, worst, stop):
    # In a process of its own: the sender's work must not delay the poller's measurements.
    while not stop.value:
        t = time.time()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
        worst.value = max(worst.value, time.time() - t)
        time.sleep(0.02)
import multiprocessing
worst, stop = multiprocessing.Value("d", 0.0), multiprocessing.Value("b", 0)
th = multiprocessing.Process(target=poll, args=(admin, worst, stop)); th.start()
s = socket.create_connection(("127.0.0.1", fwd))
t0 = time.time()
for f in frames:
    s.sendall(f)
# the last frame completes the line: all acks arrive then
want = len(frames); got = 0; buf = b""
unp = msgpack.Unpacker()
s.settimeout(60)
while got < want:
    data = s.recv(65536)
    if not data: break
    unp.feed(data)
    for _ in unp: got += 1
took = time.time() - t0
stop.value = 1; th.join()
with open(f"/proc/{agent.pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
agent.kill()
print(f"{N} one-byte parts of one line: all {got} acks after {took:.2f} s; agent CPU {cpu:.2f} s; worst /health latency meanwhile {worst.value*1000:.0f} ms")
