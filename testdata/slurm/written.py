# Writes the answers of slurmrestd 0.0.39-0.0.41 that pman's tests read,
# from the shapes of their OpenAPI schemas (values are made up).
import json, os
T0 = 1767225600  # 2026-01-01T00:00:00Z
def nv(n): return {"set": True, "infinite": False, "number": n}
unset = {"set": False, "infinite": False, "number": 0}
vers = {"0.0.39": ("23.02.7", 23, 2, 7), "0.0.40": ("23.11.10", 23, 11, 10), "0.0.41": ("24.05.8", 24, 5, 8)}
for v, (rel, ma, mi, mc) in vers.items():
    os.makedirs("v" + v, exist_ok=True)
    meta = {"plugin": {"type": "openapi/slurmctld", "name": "Slurm OpenAPI slurmctld", "data_parser": "data_parser/v" + v},
            "client": {"source": "[pman]:50000", "user": "chris", "group": "chris"},
            "command": [], "slurm": {"version": {"major": str(ma) if v != "0.0.39" else ma, "micro": str(mc) if v != "0.0.39" else mc, "minor": str(mi) if v != "0.0.39" else mi}, "release": rel, "cluster": "hpc"}}
    def ans(**kw):
        d = {"meta": meta}
        d.update(kw)
        d.setdefault("errors", [])
        d.setdefault("warnings", [])
        return d
    def err(num, short, desc, src):
        return {"description": desc, "error_number": num, "error": short, "source": src}
    def t(n):  # a time
        return n if v == "0.0.39" else nv(n)
    def state(s, *flags):
        return s if v == "0.0.39" else [s] + list(flags)
    def exitc(code, sig=0, status="SUCCESS"):
        if v == "0.0.39":
            return nv((code << 8) | sig)
        return {"status": [status], "return_code": nv(code), "signal": {"id": nv(sig) if sig else unset, "name": ""}}
    def job(jid, name, st, reason="None", desc="", code=exitc(0), start=T0 + 5, end=0, limit=60, part="batch"):
        return {"job_id": jid, "name": name, "job_state": st, "state_reason": reason, "state_description": desc,
                "exit_code": code, "derived_exit_code": exitc(0), "submit_time": t(T0), "start_time": t(start),
                "end_time": t(end), "time_limit": nv(limit), "partition": part, "user_name": "chris",
                "memory_per_node": nv(512), "cpus_per_task": nv(1), "tasks": nv(1), "nodes": "n01" if start else "",
                "standard_output": "/store/.pman/slurm/" + name + "/job.log"}
    files = {
        "submit-ok.json": ans(job_id=4242, step_id="batch", job_submit_user_msg="", **({"result": {"job_id": 4242, "step_id": "batch", "error_code": 0, "error": "No error", "job_submit_user_msg": ""}} if v != "0.0.39" else {})),
        "submit-refused.json": ans(errors=[err(2000, "Invalid partition name specified", "Batch job submission failed", "slurm_submit_batch_job()")]),
        "job-running.json": ans(jobs=[job(4242, "jid-run", state("RUNNING"))], last_backfill=t(T0), last_update=t(T0 + 6)),
        "job-completing.json": ans(jobs=[job(4242, "jid-run", state("COMPLETED", "COMPLETING") if v != "0.0.39" else "COMPLETING", end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-completed.json": ans(jobs=[job(4242, "jid-ok", state("COMPLETED"), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-failed.json": ans(jobs=[job(4242, "jid-fail", state("FAILED"), reason="NonZeroExitCode", code=exitc(3, status="ERROR"), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-oom.json": ans(jobs=[job(4242, "jid-oom", state("OUT_OF_MEMORY"), reason="OutOfMemory", code=exitc(0, 9, "SIGNALED"), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-timeout.json": ans(jobs=[job(4242, "jid-slow", state("TIMEOUT"), reason="TimeLimit", code=exitc(0, 15, "SIGNALED"), end=T0 + 3605)], last_backfill=t(T0), last_update=t(T0 + 3606)),
        "job-cancelled.json": ans(jobs=[job(4242, "jid-del", state("CANCELLED"), code=exitc(0, 15, "SIGNALED"), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-nodefail.json": ans(jobs=[job(4242, "jid-node", state("NODE_FAIL"), reason="NodeDown", desc="n01 not responding", code=exitc(0), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "job-pending.json": ans(jobs=[job(4242, "jid-wait", state("PENDING"), reason="Resources", start=0)], last_backfill=t(T0), last_update=t(T0 + 1)),
        "job-pending-partitionconfig.json": ans(jobs=[job(4242, "jid-never", state("PENDING"), reason="PartitionConfig", start=0)], last_backfill=t(T0), last_update=t(T0 + 1)),
        "job-unknown.json": ans(jobs=[], errors=[err(2017, "Invalid job id specified", "Unable to query JobId=4242", "_handle_job_get()")]),
        "cancel-ok.json": ans(),
        "jobs.json": ans(jobs=[job(4100, "jid-taken", state("RUNNING")), job(4101, "jid-old", state("COMPLETED"), end=T0 + 20)], last_backfill=t(T0), last_update=t(T0 + 21)),
        "openapi-paths.json": {"openapi": "3.0.2", "paths": {p: {} for p in [
            "/slurm/v%s/job/submit" % v, "/slurm/v%s/job/{job_id}" % v, "/slurm/v%s/jobs" % v, "/slurm/v%s/ping" % v]}},
    }
    for name, d in files.items():
        with open(os.path.join("v" + v, name), "w") as f:
            json.dump(d, f, indent=2)
            f.write("\n")
