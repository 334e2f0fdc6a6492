"""The interop check `make test` runs (tests/suite/interop.rs): against a
running daemon, as a gateway would, over the JSON encoding. Prints one JSON
object per step on stdout; exits non-zero when a step's answer is wrong.

    python interop.py HOST PORT CERTS VOUCHER ID_NUMBER INSTITUTION OPERATOR CLASS LAT LON
"""

import asyncio
import json
import sys

from voucherd_client import FrameRefused, VoucherdClient, decode_frame


def check(step, answer, ok, reason=None):
    print(json.dumps({"step": step, "answer": answer}, ensure_ascii=False), flush=True)
    if answer.get("ok") != ok or (reason is not None and answer.get("reason") != reason):
        raise SystemExit(f"{step}: expected ok={ok} reason={reason}, got {answer}")


async def main(host, port, certs, voucher, id_number, institution, operator, klass, lat, lon):
    client = await VoucherdClient.connect(host, int(port), certs, "gateway", server_name="localhost")
    claim = {"id": "py-claim", "op": "claim", "voucher": voucher, "id_number": id_number}
    redeem = {"id": "py-redeem", "op": "redeem", "voucher": voucher,
              "institution": institution, "operator": operator, "class": klass}
    checkin = {"id": "py-checkin", "op": "checkin", "voucher": voucher,
               "lat": float(lat), "lon": float(lon)}
    # A claim, then a batch of two: a redeem and a check-in.
    [answer] = await client.execute([claim])
    check("claim", answer, True)
    redeemed, checked_in = await client.execute_retrying([redeem, checkin])
    check("redeem", redeemed, True)
    check("checkin", checked_in, True)
    # A refused request: a second redemption of the same voucher.
    [answer] = await client.execute([{**redeem, "id": "py-redeem-again"}])
    check("redeem again", answer, False, "already_redeemed")
    # A malformed item is answered invalid_request in its place.
    bad, head = await client.execute([{"id": "py-bad", "op": "claim", "voucher": "7"},
                                      {"id": "py-head", "op": "audit_head"}])
    check("malformed", bad, False, "invalid_request")
    check("audit head", head, True)
    # The same id across a reconnect: the first answer, nothing applied again.
    await client.reconnect()
    [answer] = await client.execute([redeem])
    check("redeem retried after reconnect", answer, True)
    if answer != redeemed:
        raise SystemExit(f"a retried id must get the first answer: {answer} != {redeemed}")
    [after] = await client.execute([{"id": "py-head-2", "op": "audit_head"}])
    check("audit head after retry", after, True)
    if after["seq"] != head["seq"]:
        raise SystemExit(f"the retry changed the ledger: seq {head['seq']} -> {after['seq']}")
    # The training system reads the institution's events back (数据回流),
    # then a long poll with nothing new ends at its wait_ms, cursor unchanged.
    training = await VoucherdClient.connect(host, int(port), certs, "training",
                                            server_name="localhost")
    [answer] = await training.execute([{"id": "py-events", "op": "events",
                                        "institution": institution, "after": 0}])
    check("events", answer, True)
    steps = [event["op"] for event in answer["events"]]
    if steps != ["redeem", "checkin"] or answer["next"] != answer["events"][-1]["seq"]:
        raise SystemExit(f"events of the institution: {answer}")
    if id_number in json.dumps(answer):
        raise SystemExit("an event carries the ID number")
    [polled] = await training.execute([{"id": "py-poll", "op": "events", "institution": institution,
                                        "after": answer["next"], "wait_ms": 200}], timeout=15.0)
    check("events long poll", polled, True)
    if polled["events"] or polled["next"] != answer["next"]:
        raise SystemExit(f"a poll with nothing new: {polled}")
    await training.close()
    # A frame that is not a JSON array is refused whole, with a word.
    data = await client._protocol.exchange(b"\x00\x00\x00\x06\x00\x01{}{}")
    try:
        decode_frame(data)
    except FrameRefused as refused:
        check("bad frame", {"ok": False, "reason": refused.reason}, False, "invalid_request")
    else:
        raise SystemExit("a frame that is not JSON was not refused")
    await client.close()
    print(json.dumps({"step": "done"}), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:]))
    except FrameRefused as refused:
        raise SystemExit(f"frame refused: {refused}")
