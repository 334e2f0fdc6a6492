"""The interop check `make test` runs (tests/suite/interop.rs): against a
running daemon, as a gateway would, over the JSON encoding. Prints one JSON
object per step on stdout; exits non-zero when a step's answer is wrong.

    python interop.py HOST PORT CERTS VOUCHER ID_NUMBER INSTITUTION OPERATOR CLASS LAT LON ONLINE_VOUCHER

After the gateway's steps (the institution has opened no class, so CLASS is
free text), the gateway opens an online class and enrolls ONLINE_VOUCHER (a
claimed voucher of the same holder) in it, and the online platform
(`platform` certificate) reports its attendance: `checkin` with
`"online": true`.
"""

import asyncio
import datetime
import json
import sys

from voucherd_client import FrameRefused, VoucherdClient, decode_frame


def check(step, answer, ok, reason=None):
    print(json.dumps({"step": step, "answer": answer}, ensure_ascii=False), flush=True)
    if answer.get("ok") != ok or (reason is not None and answer.get("reason") != reason):
        raise SystemExit(f"{step}: expected ok={ok} reason={reason}, got {answer}")


async def main(host, port, certs, voucher, id_number, institution, operator, klass, lat, lon,
               online_voucher):
    client = await VoucherdClient.connect(host, int(port), certs, "gateway", server_name="localhost")
    claim = {"id": "py-claim", "op": "claim", "voucher": voucher, "id_number": id_number}
    redeem = {"id": "py-redeem", "op": "redeem", "voucher": voucher,
              "institution": institution, "operator": operator, "class": klass}
    checkin = {"id": "py-checkin", "op": "checkin", "voucher": voucher,
               "lat": float(lat), "lon": float(lon)}
    # A claim, the class the redeem names (every redeem names an opened
    # class of the voucher's kind), then a batch of two: a redeem and a check-in.
    [answer] = await client.execute([claim])
    check("claim", answer, True)
    await open_class_for(client, "onsite", voucher, institution, operator, klass)
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
    # The daemon closes a connection after a frame it cannot read: a new one.
    await client.reconnect()
    await online_class(client, host, port, certs, online_voucher, institution, operator,
                       float(lat), float(lon))
    await client.close()
    print(json.dumps({"step": "done"}), flush=True)


async def open_class_for(client, mode, voucher, institution, operator, klass):
    """open_class of `klass` for the voucher's kind, today to 10 days on (UTC+8)
    in `mode`: every redeem names an opened class. Returns today and the view."""
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
    [view] = await client.execute([{"id": f"py-view-{mode}", "op": "get_voucher",
                                    "voucher": voucher}])
    check(f"read the {mode} voucher", view, True)
    [opened] = await client.execute_retrying([
        {"id": f"py-open-class-{mode}", "op": "open_class", "institution": institution,
         "operator": operator, "class": klass, "kind": view["kind"],
         "first_day": today.isoformat(),
         "last_day": (today + datetime.timedelta(days=10)).isoformat(), "mode": mode}])
    check(f"open_class {mode}", opened, True)
    return today, view


async def online_class(gateway, host, port, certs, voucher, institution, operator, lat, lon):
    """open_class (online, today to 10 days on, in UTC+8), a redeem into it,
    the platform's online check-in, and a positioned one refused wrong_mode."""
    klass = "线上班 2026"
    today, view = await open_class_for(gateway, "online", voucher, institution, operator, klass)
    [again] = await gateway.execute([
        {"id": "py-open-class-again", "op": "open_class", "institution": institution,
         "operator": operator, "class": klass, "kind": view["kind"],
         "first_day": today.isoformat(), "last_day": today.isoformat(), "mode": "online"}])
    check("open_class again", again, False, "class_exists")
    [enrolled] = await gateway.execute_retrying([
        {"id": "py-enroll", "op": "redeem", "voucher": voucher, "institution": institution,
         "operator": operator, "class": klass}])
    check("redeem into the class", enrolled, True)
    platform = await VoucherdClient.connect(host, int(port), certs, "platform",
                                            server_name="localhost")
    [attended] = await platform.execute_retrying([
        {"id": "py-online", "op": "checkin", "voucher": voucher, "online": True}])
    check("online checkin", attended, True)
    if attended.get("session") != today.isoformat() or attended.get("checkins") != 1:
        raise SystemExit(f"online checkin answered {attended}")
    await platform.close()
    [positioned] = await gateway.execute([
        {"id": "py-positioned", "op": "checkin", "voucher": voucher, "lat": lat, "lon": lon}])
    check("positioned checkin of an online class", positioned, False, "wrong_mode")


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:]))
    except FrameRefused as refused:
        raise SystemExit(f"frame refused: {refused}")
