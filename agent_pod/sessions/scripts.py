"""The Lua scripts that change session state atomically inside Redis.

Each script re-reads what it decides on (pod state, heartbeat, loads, the pin)
and writes in the same step, so pods acting at once on different machines can
neither overshoot a load bound nor steal a session from a live owner. Times are
Redis server time (``TIME``), so pods' clocks never have to agree.

``PLACE`` applies ``placement.choose`` to the ring order the caller computed
(``placement.ring_order``); tests check the two give the same answer.
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

# KEYS[1] pin. ARGV: prefix, session, epsilon, stale_ms, lease_ms, pin_ttl_ms, token_hash,
# expected_owner ('' when the pin should not exist), then pod names in ring order (a cached list:
# registered pods missing from it are still considered, after the listed ones).
# -> {'placed', pod, load_before, bound, grpc_address, http_url}
#  | {'moved', current_owner} | {'full', '', total_load, eligible_pods}
PLACE = (
    _NOW
    + """
local prefix, sid = ARGV[1], ARGV[2]
local eps, stale = tonumber(ARGV[3]), tonumber(ARGV[4])
local lease, pin_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local current = redis.call('HGET', KEYS[1], 'pod')
if current and current ~= ARGV[8] then
  return {'moved', current}
end
-- the caller's ring order first; pods registered since its list was read go last
local candidates, listed = {}, {}
for i = 9, #ARGV do
  candidates[#candidates + 1] = ARGV[i]
  listed[ARGV[i]] = true
end
for _, name in ipairs(redis.call('SMEMBERS', prefix .. 'pods')) do
  if not listed[name] then
    candidates[#candidates + 1] = name
  end
end
local names, loads, caps = {}, {}, {}
local total, n = 0, 0
for _, name in ipairs(candidates) do
  local pod = redis.call('HMGET', prefix .. 'pod:' .. name, 'state', 'heartbeat_ms', 'capacity')
  if not pod[1] then
    redis.call('SREM', prefix .. 'pods', name)
  elseif pod[1] == 'ready' and now - tonumber(pod[2]) <= stale then
    local load = redis.call('ZCOUNT', prefix .. 'load:' .. name, now, '+inf')
    n = n + 1
    names[n], loads[n], caps[n] = name, load, tonumber(pod[3])
    total = total + load
  end
end
if n == 0 then
  return {'full', '', 0, 0}
end
local bound = math.max(math.floor((1 + eps) * (total + 1) / n), math.ceil((total + 1) / n))
for i = 1, n do
  if loads[i] < caps[i] and loads[i] < bound then
    local pod = prefix .. 'pod:' .. names[i]
    if current then
      redis.call('ZREM', prefix .. 'load:' .. current, sid)
    end
    redis.call('ZADD', prefix .. 'load:' .. names[i], now + lease, sid)
    local info = redis.call('HMGET', pod, 'revision', 'prompt_id', 'grpc_address', 'http_url')
    redis.call('HSET', KEYS[1], 'pod', names[i], 'revision', info[1] or '', 'prompt_id', info[2] or '',
      'token_hash', ARGV[7], 'state', 'reserved', 'updated_ms', now)
    redis.call('HSETNX', KEYS[1], 'created_ms', now)
    redis.call('PEXPIRE', KEYS[1], pin_ttl)
    return {'placed', names[i], loads[i], bound, info[3] or '', info[4] or ''}
  end
end
return {'full', '', total, n}
"""
)

# A stream arrives on this pod. KEYS[1] pin. ARGV: prefix, session, me, token_hash, stale_ms,
# lease_ms, pin_ttl_ms, prompt_id, capacity, revision, migration_hash ('' unless the caller follows a
# migration with its one-time token; the token is spent here).
# -> {'ok', previous_owner, previous_state, snapshot, moving_from, token_hash, frozen_ms}
#  | {'unauthenticated', owner} | {'wrong_pod', owner, owner_grpc_address} | {'full', owner}
CLAIM = (
    _NOW
    + """
local prefix, sid, me, th = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local stale, lease, pin_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local pin = redis.call('HMGET', KEYS[1], 'pod', 'token_hash', 'state', 'moving_from', 'handoff_hash',
  'frozen_ms')
local owner = pin[1]
if ARGV[11] ~= '' then
  if owner ~= me or pin[3] ~= 'moving' or pin[5] ~= ARGV[11] then
    return {'unauthenticated', owner or ''}
  end
  th = pin[2]
elseif owner then
  if pin[2] ~= th then
    return {'unauthenticated', owner}
  end
  if owner ~= me then
    local other = redis.call('HMGET', prefix .. 'pod:' .. owner, 'state', 'heartbeat_ms', 'grpc_address')
    if other[1] == 'ready' and now - tonumber(other[2]) <= stale then
      return {'wrong_pod', owner, other[3] or ''}
    end
  end
end
local myload = prefix .. 'load:' .. me
if owner ~= me then
  if redis.call('ZCOUNT', myload, now, '+inf') >= tonumber(ARGV[9]) then
    return {'full', owner or ''}
  end
  if owner then
    redis.call('ZREM', prefix .. 'load:' .. owner, sid)
  end
end
redis.call('ZADD', myload, now + lease, sid)
redis.call('HSET', KEYS[1], 'pod', me, 'revision', ARGV[10], 'prompt_id', ARGV[8], 'token_hash', th,
  'state', 'live', 'updated_ms', now, 'handoff_hash', '', 'moving_from', '')
redis.call('HSETNX', KEYS[1], 'created_ms', now)
redis.call('PEXPIRE', KEYS[1], pin_ttl)
local snap = redis.call('GET', prefix .. 'snap:' .. sid)
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

# KEYS[1] pin, KEYS[2] snapshot, KEYS[3] my load. ARGV: me, session, mode ('end' | 'detach'), lease_ms,
# prefix. A call that ends while it is moving away from this pod, before the caller arrived at the
# other pod, ends there too: its pin goes, so the migration token admits nobody.
RELEASE = (
    _NOW
    + """
local pin = redis.call('HMGET', KEYS[1], 'pod', 'state', 'moving_from')
local owner = pin[1]
if ARGV[3] == 'end' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  if owner and owner ~= ARGV[1] and pin[2] == 'moving' and pin[3] == ARGV[1] then
    redis.call('ZREM', ARGV[5] .. 'load:' .. owner, ARGV[2])
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
# KEYS[1] pin, KEYS[2] snapshot. ARGV: prefix, session, me, stale_ms, lease_ms, pin_ttl_ms,
# handoff_hash, my revision, cross_revision ('1' | '0'), conversation JSON ('' to keep the
# stored one), snapshot_ttl_ms, frozen_ms, then pods not to choose.
# The target is a ready, fresh pod with room: one of another revision first when crossing is allowed
# (during a rollout those are the new pods), then the least loaded relative to its capacity.
# -> {'moving', pod, grpc_address, http_url, revision} | {'no_target'} | {'not_owner', owner}
MIGRATE = (
    _NOW
    + """
local prefix, sid, me = ARGV[1], ARGV[2], ARGV[3]
local stale, lease, pin_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local myrev, cross = ARGV[8], ARGV[9] == '1'
local now = now_ms()
local owner = redis.call('HGET', KEYS[1], 'pod')
if owner ~= me then
  return {'not_owner', owner or ''}
end
local excluded = {}
for i = 13, #ARGV do
  excluded[ARGV[i]] = true
end
local best, best_score, best_other
for _, name in ipairs(redis.call('SMEMBERS', prefix .. 'pods')) do
  if name ~= me and not excluded[name] then
    local pod = redis.call('HMGET', prefix .. 'pod:' .. name, 'state', 'heartbeat_ms', 'capacity', 'revision')
    if pod[1] == 'ready' and now - tonumber(pod[2]) <= stale and (cross or pod[4] == myrev) then
      local cap = tonumber(pod[3])
      local load = redis.call('ZCOUNT', prefix .. 'load:' .. name, now, '+inf')
      if load < cap then
        local other = pod[4] ~= myrev
        local score = load / cap
        if not best or (other and not best_other) or (other == best_other and score < best_score) then
          best, best_score, best_other = name, score, other
        end
      end
    end
  end
end
if not best then
  return {'no_target'}
end
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[2], ARGV[10], 'PX', ARGV[11])
end
redis.call('ZADD', prefix .. 'load:' .. best, now + lease, sid)
local info = redis.call('HMGET', prefix .. 'pod:' .. best, 'revision', 'prompt_id', 'grpc_address',
  'http_url')
redis.call('HSET', KEYS[1], 'pod', best, 'revision', info[1] or '', 'prompt_id', info[2] or '',
  'state', 'moving', 'moving_from', me, 'handoff_hash', ARGV[7], 'frozen_ms', ARGV[12], 'updated_ms', now)
redis.call('PEXPIRE', KEYS[1], pin_ttl)
return {'moving', best, info[3] or '', info[4] or '', info[1] or ''}
"""
)

# The caller did not follow a move (or could not reach the new pod): the old pod takes the call
# back, unless the new pod serves it already. KEYS[1] pin. ARGV: prefix, session, me, stale_ms,
# lease_ms, revision, prompt_id, force ('1': the caller said it is still here, so whatever the new
# pod admitted is not the caller's live call), target.
# -> {'reclaimed'} | {'claimed', pod} | {'gone', owner}
ABORT_MIGRATION = (
    _NOW
    + """
local prefix, sid, me, target = ARGV[1], ARGV[2], ARGV[3], ARGV[9]
local now = now_ms()
local pin = redis.call('HMGET', KEYS[1], 'pod', 'state')
if pin[1] == me then
  return {'reclaimed'}
end
if pin[1] ~= target then
  return {'gone', pin[1] or ''}
end
if pin[2] ~= 'moving' and ARGV[8] ~= '1' then
  -- the caller got there; unless that pod is dead, it serves the call (draining or not)
  local pod = redis.call('HMGET', prefix .. 'pod:' .. target, 'state', 'heartbeat_ms')
  if pod[1] and pod[1] ~= 'lost' and now - tonumber(pod[2]) <= tonumber(ARGV[4]) then
    return {'claimed', target}
  end
end
redis.call('ZREM', prefix .. 'load:' .. target, sid)
redis.call('ZADD', prefix .. 'load:' .. me, now + tonumber(ARGV[5]), sid)
redis.call('HSET', KEYS[1], 'pod', me, 'revision', ARGV[6], 'prompt_id', ARGV[7], 'state', 'live',
  'moving_from', '', 'handoff_hash', '', 'updated_ms', now)
return {'reclaimed'}
"""
)

# The pod's heartbeat, which is also its re-sync after a Redis outage or restart.
# KEYS[1] pod, KEYS[2] pods set, KEYS[3] my load. ARGV: prefix, me, pod_ttl_ms, pin_ttl_ms,
# snapshot_ttl_ms, revision, restore ('1' after an outage), field count F, F registry fields
# (name, value, ...), then per owned session: id, lease_ms, token_hash, prompt_id, state.
# Missing pins are written back only when restoring or when the pod's own entry was gone (Redis
# lost its data): otherwise a pin missing here was just deleted by a release racing this heartbeat.
# A pin still "moving" away from this pod while the pod holds the call live (its abort could not
# reach Redis) is taken back: the caller never arrived at the other pod.
# -> {sessions whose pin now names another pod, names of the registered pods,
#     {session, ms left, ...} of every unexpired lease on this pod}
HEARTBEAT = (
    _NOW
    + """
local prefix, me = ARGV[1], ARGV[2]
local pin_ttl, snap_ttl, rev = ARGV[4], ARGV[5], ARGV[6]
local restore = ARGV[7] == '1' or redis.call('EXISTS', KEYS[1]) == 0
local now = now_ms()
local nf = tonumber(ARGV[8])
local fields = {}
for i = 9, 8 + nf do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], 'heartbeat_ms', now, unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], me)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local moved = {}
local i = 9 + nf
while i + 4 <= #ARGV do
  local sid = ARGV[i]
  local pin = prefix .. 'pin:' .. sid
  local p = redis.call('HMGET', pin, 'pod', 'state', 'moving_from')
  local owner = p[1]
  if owner and owner ~= me and p[2] == 'moving' and p[3] == me and ARGV[i + 4] == 'live' then
    redis.call('ZREM', prefix .. 'load:' .. owner, sid)
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
    redis.call('PEXPIRE', prefix .. 'snap:' .. sid, snap_ttl)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[i + 1]), sid)
  end
  i = i + 5
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
