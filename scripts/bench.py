#!/usr/bin/env python3
"""W1 benchmark: 1,000,000 NDJSON lines (~280 B) through the release `agent` binary into the
fast fake CloudWatch Logs endpoint (../shared/bench/fake-cwl), per input (stdin, file tail,
Fluent Forward). Prints lines/s, MiB/s, CPU seconds and peak RSS (VmHWM, read from /proc
while the agent runs: wait4's ru_maxrss would include the Python parent's RSS at fork), and
checks that the endpoint counted every line. With --baseline BIN the runs of both binaries
are interleaved and same-sitting ratios printed; with --multiline both, the runs of the one
binary with [pipeline.multiline] off and on (every built-in rule; W1 holds no trace) are, and
--plain makes every W1 line plain text (prefixed, so not JSON: multiline's literal scan then
looks at every line). With --rate B/s it instead feeds a file the
agent tails at that steady rate for --duration seconds and prints the CPU share of one core
and the RSS, the figures ECS task sizing needs. A benchmark, not a test: run it by hand on a
quiet machine.

usage: scripts/bench.sh [--lines N] [--runs R] [--inputs stdin,file,forward] [--baseline BIN]
                        [--multiline off|on|both] [--plain]
       scripts/bench.sh --rate 1000000 [--duration 60]
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listening on {port}")


MEMORY_MIB = 16
IN_FLIGHT = 4
DISK_BUFFER = "off"
SENTRY = False


def proc_status(pid, key):
    """A /proc/PID/status value in KiB (VmHWM, VmRSS), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith(key + ":")), None)
    except OSError:
        return None


def proc_cpu_seconds(pid):
    """utime + stime of PID so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_config(tmp, endpoint, admin, source, multiline=False):
    return f"""
memory_limit_mib = {MEMORY_MIB}
shutdown_grace_secs = 25
[admin]
address = "127.0.0.1:{admin}"
{source}
[sinks.cloudwatch_logs]
log_group = "/bench/agent"
endpoint = "{endpoint}"
region = "us-east-1"
max_in_flight = {IN_FLIGHT}
[metrics]
publish = "none"        # request metrics are still extracted; nothing leaves loopback
""" + ("" if not multiline else """
[pipeline.multiline]
rules = ["java", "python", "go", "node", "ruby"]
""") + ("" if DISK_BUFFER == "off" else f"""
[disk_buffer]
path = "{os.path.join(tmp, 'buffer')}"
fsync = "{DISK_BUFFER}"
""") + ("" if not SENTRY else f"""
[sinks.sentry]
dsn = "http://benchkey@127.0.0.1:{free_port()}/1"   # nothing listens: sends fail, counted
""")


def forward_frames(lines_path, out_path, per_frame=1000):
    import msgpack
    packer = msgpack.Packer(use_bin_type=True)
    with open(lines_path, "rb") as src, open(out_path, "wb") as out:
        batch = []
        now = int(time.time())
        def flush():
            entries = b"".join(packer.pack([now, {"log": l, "container_name": "api", "source": "stdout"}]) for l in batch)
            out.write(packer.pack(["api", entries, {"size": len(batch)}]))
            batch.clear()
        for line in src:
            batch.append(line.rstrip(b"\n"))
            if len(batch) == per_frame:
                flush()
        if batch:
            flush()


def run_once(agent_bin, fake_bin, lines_path, frames_path, n, size, source, multiline=False):
    fake_port, admin = free_port(), free_port()
    fake = subprocess.Popen([fake_bin, "--port", str(fake_port)], stdout=subprocess.DEVNULL)
    try:
        wait_port(fake_port)
        with tempfile.TemporaryDirectory() as tmp:
            fwd_port = free_port()
            src = {
                "stdin": "[sources.stdin]",
                "file": f'[sources.file]\ninclude = ["{lines_path}"]\ncheckpoint_path = "{tmp}/cp.json"\nstart_at = "beginning"\npoll_interval_ms = 50',
                "forward": f'[sources.forward]\naddress = "127.0.0.1:{fwd_port}"',
            }[source]
            cfg = os.path.join(tmp, "agent.toml")
            open(cfg, "w").write(agent_config(tmp, f"http://127.0.0.1:{fake_port}", admin, src, multiline))
            env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
            stdin = open(lines_path, "rb") if source == "stdin" else subprocess.DEVNULL
            start = time.time()
            agent = subprocess.Popen([agent_bin, "run", "--config", cfg], stdin=stdin, stderr=subprocess.DEVNULL, env=env)
            if source == "forward":
                wait_port(fwd_port)
                with socket.create_connection(("127.0.0.1", fwd_port)) as s, open(frames_path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        s.sendall(chunk)
            # wait4 (not Popen.poll, which would reap the child and lose its rusage).
            exited = None
            hwm = 0
            while get_json(f"http://127.0.0.1:{fake_port}/stats")["events"] < n and exited is None:
                hwm = max(hwm, proc_status(agent.pid, "VmHWM") or 0)
                pid, status, usage = os.wait4(agent.pid, os.WNOHANG)
                if pid:
                    exited = (status, usage)
                time.sleep(0.01)
            hwm = max(hwm, proc_status(agent.pid, "VmHWM") or 0)
            wall = time.time() - start
            events = get_json(f"http://127.0.0.1:{fake_port}/stats")["events"]
            if exited is None:
                os.kill(agent.pid, signal.SIGTERM)
                _, status, usage = os.wait4(agent.pid, 0)
            else:
                status, usage = exited
            agent.returncode = os.waitstatus_to_exitcode(status)
            return dict(wall=wall, lines_s=n / wall, mib_s=size / wall / 2**20, cpu=usage.ru_utime + usage.ru_stime,
                        rss_mib=hwm / 1024, events=events, exit=os.waitstatus_to_exitcode(status))
    finally:
        fake.kill(); fake.wait()


def idle_rss(agent_bin, fake_bin):
    fake_port, admin, fwd = free_port(), free_port(), free_port()
    fake = subprocess.Popen([fake_bin, "--port", str(fake_port)], stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "agent.toml")
        open(cfg, "w").write(agent_config(tmp, f"http://127.0.0.1:{fake_port}", admin, f'[sources.forward]\naddress = "127.0.0.1:{fwd}"'))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        agent = subprocess.Popen([agent_bin, "run", "--config", cfg], stderr=subprocess.DEVNULL, env=env)
        wait_port(admin); time.sleep(2)
        rss = next(int(l.split()[1]) for l in open(f"/proc/{agent.pid}/status") if l.startswith("VmRSS:")) / 1024
        agent.terminate(); agent.wait(); fake.kill(); fake.wait()
        return rss


def steady_rate(agent_bin, fake_bin, rate, duration, template_path):
    """Appends W1 lines to a tailed file at `rate` bytes/s for `duration` s."""
    lines = open(template_path, "rb").read().splitlines(keepends=True)
    fake_port, admin = free_port(), free_port()
    fake = subprocess.Popen([fake_bin, "--port", str(fake_port)], stdout=subprocess.DEVNULL)
    try:
        wait_port(fake_port)
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "app.log")
            open(log, "wb").close()
            src = f'[sources.file]\ninclude = ["{log}"]\ncheckpoint_path = "{tmp}/cp.json"\nstart_at = "beginning"'
            cfg = os.path.join(tmp, "agent.toml")
            open(cfg, "w").write(agent_config(tmp, f"http://127.0.0.1:{fake_port}", admin, src))
            env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
            agent = subprocess.Popen([agent_bin, "run", "--config", cfg], stderr=subprocess.DEVNULL, env=env)
            wait_port(admin)
            time.sleep(1)
            cpu0, t0, written, i = proc_cpu_seconds(agent.pid), time.time(), 0, 0
            rss_samples = []
            with open(log, "ab", buffering=0) as out:
                while (elapsed := time.time() - t0) < duration:
                    due = int(rate * elapsed) - written
                    chunk = []
                    while due > 0:
                        line = lines[i % len(lines)]; i += 1
                        chunk.append(line); due -= len(line); written += len(line)
                    if chunk:
                        out.write(b"".join(chunk))
                    rss_samples.append(proc_status(agent.pid, "VmRSS") or 0)
                    time.sleep(0.05)
            cpu = proc_cpu_seconds(agent.pid) - cpu0
            wall = time.time() - t0
            hwm = proc_status(agent.pid, "VmHWM") or 0
            deadline = time.time() + 30
            while get_json(f"http://127.0.0.1:{fake_port}/stats")["events"] < i and time.time() < deadline:
                time.sleep(0.05)
            counted = get_json(f"http://127.0.0.1:{fake_port}/stats")["events"]
            agent.terminate(); agent.wait()
            print(f"steady {rate / 1e6:.2f} MB/s ({i / wall:,.0f} lines/s) for {wall:.0f} s, memory_limit_mib = {MEMORY_MIB}: "
                  f"CPU {100 * cpu / wall:.1f}% of one core, RSS median {statistics.median(rss_samples) / 1024:.1f} MiB, "
                  f"peak {hwm / 1024:.1f} MiB; counted {counted} of {i}" + ("" if counted == i else "  LOST EVENTS"))
    finally:
        fake.kill(); fake.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--inputs", default="stdin,file,forward")
    ap.add_argument("--agent", required=True)
    ap.add_argument("--fake", required=True)
    ap.add_argument("--memory-mib", type=int, default=MEMORY_MIB, help="the agent's memory_limit_mib")
    ap.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="the sink's max_in_flight")
    ap.add_argument("--disk-buffer", choices=["off", "batch", "never"], default=DISK_BUFFER,
                    help="run with the disk buffer, fsync per batch or never (default off: memory only)")
    ap.add_argument("--sentry", action="store_true",
                    help="with the Sentry sink on (breadcrumbs of every line; sends fail fast)")
    ap.add_argument("--baseline", help="another agent binary, run interleaved with --agent (same sitting)")
    ap.add_argument("--multiline", choices=["off", "on", "both"], default="off",
                    help="[pipeline.multiline] with every built-in rule; both: off and on interleaved (same binary)")
    ap.add_argument("--plain", action="store_true", help="W1 lines as plain text (not JSON)")
    ap.add_argument("--rate", type=float, help="steady mode: bytes/s appended to a tailed file")
    ap.add_argument("--duration", type=float, default=60, help="steady mode: seconds")
    a = ap.parse_args()
    globals()["DISK_BUFFER"] = a.disk_buffer
    globals()["SENTRY"] = a.sentry
    if a.multiline == "both" and a.baseline:
        raise SystemExit("--multiline both compares configurations of one binary: not with --baseline")
    globals()["MEMORY_MIB"] = a.memory_mib
    globals()["IN_FLIGHT"] = a.in_flight
    work = tempfile.mkdtemp(prefix="bench-")
    lines_path, frames_path = os.path.join(work, "w1.ndjson"), os.path.join(work, "w1.forward")
    with open(lines_path, "wb") as f:
        subprocess.run([sys.executable, os.path.join(ROOT, "../shared/bench/gen_logs.py"), str(a.lines)], stdout=f, check=True)
    if a.plain:
        text = open(lines_path, "rb").read()
        open(lines_path, "wb").write(b"".join(b"plain " + l for l in text.splitlines(keepends=True)))
    size = os.path.getsize(lines_path)
    print(f"W1: {a.lines} lines, {size / 2**20:.1f} MiB, {size / a.lines:.0f} B/line; {a.runs} runs per input, medians; "
          f"memory_limit_mib = {a.memory_mib}, max_in_flight = {a.in_flight}, disk buffer: {a.disk_buffer}, sentry: {'on' if a.sentry else 'off'}, "
          f"multiline: {a.multiline}{', plain text' if a.plain else ''}")
    if a.rate:
        steady_rate(a.agent, a.fake, a.rate, a.duration, lines_path)
        return
    if "forward" in a.inputs:
        forward_frames(lines_path, frames_path)
    on = a.multiline == "on"
    agents = [("agent", a.agent, on)] + ([("baseline", a.baseline, on)] if a.baseline else [])
    if a.multiline == "both":
        agents = [("ml-on", a.agent, True), ("ml-off", a.agent, False)]
    print(f"{'binary':<9} {'input':<8} {'lines/s':>10} {'MiB/s':>7} {'CPU s/1M':>9} {'peak RSS MiB':>13} {'counted':>9}  runs (lines/s)")
    for source in a.inputs.split(","):
        runs = {name: [] for name, _, _ in agents}
        for _ in range(a.runs):
            for name, binary, multiline in agents:
                runs[name].append(run_once(binary, a.fake, lines_path, frames_path, a.lines, size, source, multiline))
        medians = {}
        for name, _, _ in agents:
            med = lambda k: statistics.median(r[k] for r in runs[name])
            medians[name] = {k: med(k) for k in ("lines_s", "cpu", "rss_mib")}
            counted = min(r["events"] for r in runs[name])
            print(f"{name:<9} {source:<8} {med('lines_s'):>10,.0f} {med('mib_s'):>7.1f} {med('cpu') * 1e6 / a.lines:>9.2f} {med('rss_mib'):>13.1f} "
                  f"{counted:>9}  {[round(r['lines_s']) for r in runs[name]]}" + ("" if counted == a.lines else "  LOST EVENTS"))
        if a.baseline or a.multiline == "both":
            (new_name, _, _), (old_name, _, _) = agents
            new, old = medians[new_name], medians[old_name]
            print(f"{'ratio':<9} {source:<8} {new['lines_s'] / old['lines_s']:>10.2f} {'':>7} {new['cpu'] / old['cpu']:>9.2f} "
                  f"{new['rss_mib'] / old['rss_mib']:>13.2f}   ({new_name} / {old_name})")
    for name, binary, _ in agents[:2 if a.multiline != "both" else 1]:
        print(f"idle RSS of {name} (forward source, nothing flowing): {idle_rss(binary, a.fake):.1f} MiB")


if __name__ == "__main__":
    main()
