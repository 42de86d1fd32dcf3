"""The Lua scripts that change session state atomically inside Redis.

Each script re-reads what it decides on (pod state, heartbeat, loads, the pin)
and writes in the same step, so pods acting at once on different machines can
neither overshoot a load bound nor steal a session from a live owner. Times are
Redis server time (``TIME``), so pods' clocks never have to agree.

``PLACE`` applies ``placement.choose_revision`` to the ring order and canary bucket the caller
computed (``placement.ring_order``, ``placement.revision_bucket``); tests check the two give the
same answer.

Every key a script touches comes in KEYS (``script_keys`` builds them), never
built inside Lua: a Redis Cluster routes a script by its keys, and all of an
agent's keys share one hash tag, so each script runs on the node that holds
them all. A script that finds it needs a key the caller could not know (a pod
registered since the caller's list, the pin naming another owner than guessed)
answers ``stale_list`` / ``retry`` before writing anything, and the caller asks
again with the right keys.
"""

from __future__ import annotations

from typing import Any

from .redis_client import AnyRedis

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS[1] pin, KEYS[2] pods set, KEYS[3] the expected owner's load, KEYS[4] the rollout, then each
# candidate's record and load (in ARGV order). ARGV: session, epsilon, stale_ms, lease_ms, pin_ttl_ms,
# token_hash, expected_owner ('' when the pin should not exist), the session's bucket (0..99), then pod
# names in ring order. With a rollout (``placement.choose_revision``) the session's side of the split
# goes first: its pinned revision's side when re-placed, else the canary when bucket < weight; the
# bound counts that side's pods only, and the other side takes the session when the first has no room.
# -> {'placed', pod, load_before, bound, grpc_address, http_url, side ('' without a rollout),
#     fallback ('1': the session's side had no room)}
#  | {'moved', current_owner} | {'full', '', total_load, eligible_pods}
#  | {'stale_list'} (a registered pod is missing from the candidates: list the pods again)
PLACE = (
    _NOW
    + """
local sid = ARGV[1]
local eps, stale = tonumber(ARGV[2]), tonumber(ARGV[3])
local lease, pin_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local pin = redis.call('HMGET', KEYS[1], 'pod', 'revision')
local current = pin[1]
if current and current ~= ARGV[7] then
  return {'moved', current}
end
local listed = {}
for i = 9, #ARGV do
  listed[ARGV[i]] = true
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not listed[name] then
    return {'stale_list'}
  end
end
local rollout = redis.call('HMGET', KEYS[4], 'canary', 'weight')
local canary = rollout[1]
if canary == '' then
  canary = false
end
-- the eligible pods of each side ('all' without a rollout), in ring order
local sides = {all = {}, canary = {}, stable = {}}
local total, n = 0, 0
for j = 1, #ARGV - 8 do
  local name = ARGV[j + 8]
  local pod = redis.call('HMGET', KEYS[2 * j + 3], 'state', 'heartbeat_ms', 'capacity', 'revision')
  if not pod[1] then
    redis.call('SREM', KEYS[2], name)
  elseif pod[1] == 'ready' and now - tonumber(pod[2]) <= stale then
    local load = redis.call('ZCOUNT', KEYS[2 * j + 4], now, '+inf')
    local side = 'all'
    if canary then
      side = pod[4] == canary and 'canary' or 'stable'
    end
    local list = sides[side]
    list[#list + 1] = {name = name, load = load, cap = tonumber(pod[3]), slot = j}
    total, n = total + load, n + 1
  end
end
if n == 0 then
  return {'full', '', 0, 0}
end
local order = {'all'}
if canary then
  local first
  if current and pin[2] then
    first = pin[2] == canary and 'canary' or 'stable'
  else
    first = tonumber(ARGV[8]) < (tonumber(rollout[2]) or 0) and 'canary' or 'stable'
  end
  order = {first, first == 'canary' and 'stable' or 'canary'}
end
for k, side in ipairs(order) do
  local pods = sides[side]
  if #pods > 0 then
    local sum = 0
    for _, p in ipairs(pods) do
      sum = sum + p.load
    end
    local bound = math.max(math.floor((1 + eps) * (sum + 1) / #pods), math.ceil((sum + 1) / #pods))
    for _, p in ipairs(pods) do
      if p.load < p.cap and p.load < bound then
        local record, load = KEYS[2 * p.slot + 3], KEYS[2 * p.slot + 4]
        if current then
          redis.call('ZREM', KEYS[3], sid)
        end
        redis.call('ZADD', load, now + lease, sid)
        local info = redis.call('HMGET', record, 'revision', 'prompt_id', 'grpc_address', 'http_url')
        redis.call('HSET', KEYS[1], 'pod', p.name, 'revision', info[1] or '', 'prompt_id', info[2] or '',
          'token_hash', ARGV[6], 'state', 'reserved', 'updated_ms', now)
        redis.call('HSETNX', KEYS[1], 'created_ms', now)
        redis.call('PEXPIRE', KEYS[1], pin_ttl)
        return {'placed', p.name, p.load, bound, info[3] or '', info[4] or '', canary and side or '',
          k > 1 and '1' or '0'}
      end
    end
  end
end
return {'full', '', total, n}
"""
)

# A stream arrives on this pod. KEYS[1] pin, KEYS[2] snapshot, KEYS[3] my load, KEYS[4] the guessed
# owner's record, KEYS[5] its load. ARGV: session, me, token_hash, stale_ms, lease_ms, pin_ttl_ms,
# prompt_id, capacity, revision, migration_hash ('' unless the caller follows a migration with its
# one-time token; the token is spent here), guessed owner, may_create ('1': a brand-new session, or
# one this pod still holds, whose pin Redis may have lost; else a missing pin means the call ended or
# expired, and its resume token opens nothing any more), roaming ('1': the caller cannot be sent to
# another pod, an AudioSocket PBX: a call no stream holds, reserved or detached, comes to this pod even
# while its pod is alive; a live one is still refused).
# -> {'ok', previous_owner, previous_state, snapshot, moving_from, token_hash, frozen_ms}
#  | {'unauthenticated', owner} | {'wrong_pod', owner, owner_grpc_address} | {'full', owner}
#  | {'retry', owner} (the pin names another pod than guessed: ask again with its keys) | {'ended'}
CLAIM = (
    _NOW
    + """
local sid, me, th = ARGV[1], ARGV[2], ARGV[3]
local stale, lease, pin_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local pin = redis.call('HMGET', KEYS[1], 'pod', 'token_hash', 'state', 'moving_from', 'handoff_hash',
  'frozen_ms')
local owner = pin[1]
if ARGV[10] ~= '' then
  if owner ~= me or pin[3] ~= 'moving' or pin[5] ~= ARGV[10] then
    return {'unauthenticated', owner or ''}
  end
  th = pin[2]
elseif owner then
  if pin[2] ~= th then
    return {'unauthenticated', owner}
  end
end
if owner and owner ~= me and owner ~= ARGV[11] then
  return {'retry', owner}
end
if owner and owner ~= me and ARGV[10] == '' then
  local other = redis.call('HMGET', KEYS[4], 'state', 'heartbeat_ms', 'grpc_address')
  local idle = pin[3] == 'reserved' or pin[3] == 'detached'
  if other[1] == 'ready' and now - tonumber(other[2]) <= stale and not (ARGV[13] == '1' and idle) then
    return {'wrong_pod', owner, other[3] or ''}
  end
end
if not owner and ARGV[12] ~= '1' then
  return {'ended'}
end
if owner ~= me then
  if redis.call('ZCOUNT', KEYS[3], now, '+inf') >= tonumber(ARGV[8]) then
    return {'full', owner or ''}
  end
  if owner then
    redis.call('ZREM', KEYS[5], sid)
  end
end
redis.call('ZADD', KEYS[3], now + lease, sid)
redis.call('HSET', KEYS[1], 'pod', me, 'revision', ARGV[9], 'prompt_id', ARGV[7], 'token_hash', th,
  'state', 'live', 'updated_ms', now, 'handoff_hash', '', 'moving_from', '')
redis.call('HSETNX', KEYS[1], 'created_ms', now)
redis.call('PEXPIRE', KEYS[1], pin_ttl)
local snap = redis.call('GET', KEYS[2])
local moving_from = ''
if pin[3] == 'moving' and owner == me then
  moving_from = pin[4] or ''
end
return {'ok', owner or '', pin[3] or '', snap or '', moving_from, th, pin[6] or '0'}
"""
)

# A batch of snapshots in one step (scripts cannot be pipelined on a Redis Cluster).
# KEYS: pin, snapshot of each session. ARGV: me, ttl_ms, then each session's conversation JSON.
# Only the owner writes. -> {1 | 0 per session}
SNAPSHOTS = """
local written = {}
for i = 1, #KEYS / 2 do
  local owner = redis.call('HGET', KEYS[2 * i - 1], 'pod')
  if owner and owner ~= ARGV[1] then
    written[i] = 0
  else
    redis.call('SET', KEYS[2 * i], ARGV[i + 2], 'PX', ARGV[2])
    written[i] = 1
  end
end
return written
"""

# KEYS[1] a pod's registry entry. -> {HGETALL as a flat list, Redis time in ms} (TIME cannot be
# pipelined on a Redis Cluster).
POD_AND_TIME = (
    _NOW
    + """
return {redis.call('HGETALL', KEYS[1]), now_ms()}
"""
)

# KEYS[1] pin, KEYS[2] snapshot, KEYS[3] my load, KEYS[4] the guessed owner's load. ARGV: me, session,
# mode ('end' | 'detach'), lease_ms, guessed owner. A call that ends while it is moving away from this
# pod, before the caller arrived at the other pod, ends there too: its pin goes, so the migration
# token admits nobody. -> 1 | 0 | {'retry', owner} (that owner's load is needed: ask again)
RELEASE = (
    _NOW
    + """
local pin = redis.call('HMGET', KEYS[1], 'pod', 'state', 'moving_from')
local owner = pin[1]
if ARGV[3] == 'end' then
  local leaving = owner and owner ~= ARGV[1] and pin[2] == 'moving' and pin[3] == ARGV[1]
  if leaving and owner ~= ARGV[5] then
    return {'retry', owner}
  end
  redis.call('ZREM', KEYS[3], ARGV[2])
  if leaving then
    redis.call('ZREM', KEYS[4], ARGV[2])
    owner = nil
  end
  if not owner or owner == ARGV[1] then
    redis.call('DEL', KEYS[1], KEYS[2])
  end
  return 1
end
if owner ~= ARGV[1] then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 0
end
local now = now_ms()
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'detached', 'updated_ms', now)
return 1
"""
)

# A pod moves a live call it owns to another pod, writing the call's state in the same step.
# KEYS[1] pin, KEYS[2] snapshot, KEYS[3] pods set, then each candidate's record and load (in ARGV
# order). ARGV: session, me, stale_ms, lease_ms, pin_ttl_ms, handoff_hash, my revision, cross_revision
# ('1' | '0'), conversation JSON ('' to keep the stored one), snapshot_ttl_ms, frozen_ms, candidate
# count C, the C candidates (registered pods other than me, not excluded), then pods not to choose.
# The target is a ready, fresh pod with room: one of another revision first when crossing is allowed
# (during a rollout those are the new pods), then the least loaded relative to its capacity.
# -> {'moving', pod, grpc_address, http_url, revision} | {'no_target'} | {'not_owner', owner}
#  | {'stale_list'} (a registered pod is missing from the candidates: list the pods again)
MIGRATE = (
    _NOW
    + """
local sid, me = ARGV[1], ARGV[2]
local stale, lease, pin_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local myrev, cross = ARGV[7], ARGV[8] == '1'
local now = now_ms()
local owner = redis.call('HGET', KEYS[1], 'pod')
if owner ~= me then
  return {'not_owner', owner or ''}
end
local count = tonumber(ARGV[12])
local known = {[me] = true}
for i = 13, #ARGV do
  known[ARGV[i]] = true
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if not known[name] then
    return {'stale_list'}
  end
end
local best, best_score, best_other
for j = 1, count do
  local pod = redis.call('HMGET', KEYS[2 * j + 2], 'state', 'heartbeat_ms', 'capacity', 'revision')
  if pod[1] == 'ready' and now - tonumber(pod[2]) <= stale and (cross or pod[4] == myrev) then
    local cap = tonumber(pod[3])
    local load = redis.call('ZCOUNT', KEYS[2 * j + 3], now, '+inf')
    if load < cap then
      local other = pod[4] ~= myrev
      local score = load / cap
      if not best or (other and not best_other) or (other == best_other and score < best_score) then
        best, best_score, best_other = j, score, other
      end
    end
  end
end
if not best then
  return {'no_target'}
end
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[2], ARGV[9], 'PX', ARGV[10])
end
redis.call('ZADD', KEYS[2 * best + 3], now + lease, sid)
local info = redis.call('HMGET', KEYS[2 * best + 2], 'revision', 'prompt_id', 'grpc_address', 'http_url')
local name = ARGV[12 + best]
redis.call('HSET', KEYS[1], 'pod', name, 'revision', info[1] or '', 'prompt_id', info[2] or '',
  'state', 'moving', 'moving_from', me, 'handoff_hash', ARGV[6], 'frozen_ms', ARGV[11], 'updated_ms', now)
redis.call('PEXPIRE', KEYS[1], pin_ttl)
return {'moving', name, info[3] or '', info[4] or '', info[1] or ''}
"""
)

# The caller did not follow a move (or could not reach the new pod): the old pod takes the call
# back, unless the new pod serves it already. KEYS[1] pin, KEYS[2] the target's record, KEYS[3] its
# load, KEYS[4] my load. ARGV: session, me, stale_ms, lease_ms, revision, prompt_id, force ('1': the
# caller said it is still here, so whatever the new pod admitted is not the caller's live call),
# target.
# -> {'reclaimed'} | {'claimed', pod} | {'gone', owner}
ABORT_MIGRATION = (
    _NOW
    + """
local sid, me, target = ARGV[1], ARGV[2], ARGV[8]
local now = now_ms()
local pin = redis.call('HMGET', KEYS[1], 'pod', 'state')
if pin[1] == me then
  return {'reclaimed'}
end
if pin[1] ~= target then
  return {'gone', pin[1] or ''}
end
if pin[2] ~= 'moving' and ARGV[7] ~= '1' then
  -- the caller got there; unless that pod is dead, it serves the call (draining or not)
  local pod = redis.call('HMGET', KEYS[2], 'state', 'heartbeat_ms')
  if pod[1] and pod[1] ~= 'lost' and now - tonumber(pod[2]) <= tonumber(ARGV[3]) then
    return {'claimed', target}
  end
end
redis.call('ZREM', KEYS[3], sid)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), sid)
redis.call('HSET', KEYS[1], 'pod', me, 'revision', ARGV[5], 'prompt_id', ARGV[6], 'state', 'live',
  'moving_from', '', 'handoff_hash', '', 'updated_ms', now)
return {'reclaimed'}
"""
)

# The pod's heartbeat, which is also its re-sync after a Redis outage or restart.
# KEYS[1] pod, KEYS[2] pods set, KEYS[3] my load, then each owned session's pin and snapshot, then
# the loads of the other pods the caller knows. ARGV: me, pod_ttl_ms, pin_ttl_ms, snapshot_ttl_ms,
# revision, restore ('1' after an outage), field count F, F registry fields (name, value, ...),
# session count S, per owned session: id, lease_ms, token_hash, prompt_id, state; then the other
# pods' names (in the order of their load keys).
# Missing pins are written back only when restoring or when the pod's own entry was gone (Redis
# lost its data): otherwise a pin missing here was just deleted by a release racing this heartbeat.
# A pin still "moving" away from this pod while the pod holds the call live (its abort could not
# reach Redis) is taken back: the caller never arrived at the other pod (whose short lease on the
# call is removed when the caller knew that pod, else it expires).
# -> {sessions whose pin now names another pod, names of the registered pods,
#     {session, ms left, ...} of every unexpired lease on this pod}
HEARTBEAT = (
    _NOW
    + """
local me = ARGV[1]
local pin_ttl, snap_ttl, rev = ARGV[3], ARGV[4], ARGV[5]
local restore = ARGV[6] == '1' or redis.call('EXISTS', KEYS[1]) == 0
local now = now_ms()
local nf = tonumber(ARGV[7])
local fields = {}
for i = 8, 7 + nf do
  fields[#fields + 1] = ARGV[i]
end
local ns = tonumber(ARGV[8 + nf])
local first = 9 + nf
local others = {}
for k = first + 5 * ns, #ARGV do
  others[ARGV[k]] = KEYS[3 + 2 * ns + k - first - 5 * ns + 1]
end
redis.call('HSET', KEYS[1], 'heartbeat_ms', now, unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], me)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local moved = {}
for s = 1, ns do
  local i = first + 5 * (s - 1)
  local sid = ARGV[i]
  local pin, snap = KEYS[2 + 2 * s], KEYS[3 + 2 * s]
  local p = redis.call('HMGET', pin, 'pod', 'state', 'moving_from')
  local owner = p[1]
  if owner and owner ~= me and p[2] == 'moving' and p[3] == me and ARGV[i + 4] == 'live' then
    if others[owner] then
      redis.call('ZREM', others[owner], sid)
    end
    redis.call('HSET', pin, 'pod', me, 'revision', rev, 'moving_from', '', 'handoff_hash', '')
    owner = me
  end
  if owner and owner ~= me then
    moved[#moved + 1] = sid
  elseif owner or restore then
    if not owner then
      redis.call('HSET', pin, 'pod', me, 'revision', rev, 'prompt_id', ARGV[i + 3], 'token_hash', ARGV[i + 2],
        'created_ms', now)
    end
    redis.call('HSET', pin, 'state', ARGV[i + 4], 'updated_ms', now)
    redis.call('PEXPIRE', pin, pin_ttl)
    redis.call('PEXPIRE', snap, snap_ttl)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[i + 1]), sid)
  end
end
local leases = {}
local held = redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf', 'WITHSCORES')
for j = 1, #held, 2 do
  leases[#leases + 1] = held[j]
  leases[#leases + 1] = tostring(tonumber(held[j + 1]) - now)
end
return {moved, redis.call('SMEMBERS', KEYS[2]), leases}
"""
)

# A probe found a pod unreachable: mark it lost unless it heartbeat since it was read.
# KEYS[1] pod. ARGV: the heartbeat_ms that was read.
MARK_LOST = """
if redis.call('HGET', KEYS[1], 'heartbeat_ms') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'lost')
  return 1
end
return 0
"""


class Scripts:
    """The scripts registered on one client (redis-py reloads them after a Redis restart)."""

    def __init__(self, redis: AnyRedis) -> None:
        self.place: Any = redis.register_script(PLACE)
        self.claim: Any = redis.register_script(CLAIM)
        self.snapshots: Any = redis.register_script(SNAPSHOTS)
        self.pod_and_time: Any = redis.register_script(POD_AND_TIME)
        self.release: Any = redis.register_script(RELEASE)
        self.heartbeat: Any = redis.register_script(HEARTBEAT)
        self.mark_lost: Any = redis.register_script(MARK_LOST)
        self.migrate: Any = redis.register_script(MIGRATE)
        self.abort_migration: Any = redis.register_script(ABORT_MIGRATION)
