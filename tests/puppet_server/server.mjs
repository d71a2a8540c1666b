// Test-only puppet service: the reference PuppetServer (npm wechaty-puppet-service) serving
// wechaty-puppet-mock on 127.0.0.1, TLS disabled, for tests/test_wechaty_e2e.py.
//
//   POND_MOCK_PORT=50123 POND_MOCK_TOKEN=insecure_xyz node server.mjs
//
// Control channel: one JSON command per line on stdin, e.g.
//   {"id": 1, "cmd": "say", "from": "wxid_alice", "text": "你好"}
// Every line on stdout is JSON: {"id": 1, "ok": true, ...} answers a command, and
// {"event": "sent", ...} reports something the bot did (the server's record of the bot).
// Logs go to stderr only. The token is never printed (keep WECHATY_LOG at info or quieter:
// the libraries print it at verbose level).
//
// The stock mock leaves friendship and room-invitation payloads empty; this harness fills
// them in (see PondMock). Ids containing "@" are rooms, as the mock requires.

import readline from 'node:readline'
import * as PUPPET from 'wechaty-puppet'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import { PuppetServer } from 'wechaty-puppet-service'
import { FileBox } from 'file-box'

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
// Libraries may print with console.log/info: keep stdout for the protocol.
console.log = console.info = console.warn = console.debug = (...args) => console.error(...args)

const PORT = Number(process.env.POND_MOCK_PORT || 0)
const TOKEN = process.env.POND_MOCK_TOKEN || ''
const AUTOLOGIN = process.env.POND_MOCK_AUTOLOGIN !== '0'
// Emulate puppet services from before mid-2021, which did not tell a newly connected client
// that the account was already logged in (no login event at stream start).
const HIDE_LOGIN = process.env.POND_MOCK_HIDE_LOGIN === '1'
if (!PORT || !TOKEN) {
  console.error('POND_MOCK_PORT and POND_MOCK_TOKEN are required')
  process.exit(2)
}

const BOT = { id: 'wxid_pond_bot', name: '小塘' }
const PEOPLE = [
  { id: 'wxid_alice', name: 'Alice' },
  { id: 'wxid_bob', name: 'Bob' },
  { id: 'wxid_carol', name: 'Carol' },
]
const ROOMS = [
  { id: 'room-1@chatroom', topic: '鱼塘测试群', memberIdList: [BOT.id, 'wxid_alice', 'wxid_bob'] },
]

const friendships = new Map() // id -> payload
const invitations = new Map() // id -> payload
let returnIds = false // the stock mock returns no message id for sends
let seq = 0
const nextId = (prefix) => `${prefix}-${Date.now().toString(36)}-${++seq}`

class PondMock extends PuppetMock {
  get isLoggedIn () {
    // The stream manager asks this when a client connects: hide the answer from it only.
    if (HIDE_LOGIN && (new Error().stack || '').includes('EventStreamManager.start')) return false
    return super.isLoggedIn
  }

  record (kind, data) {
    out({ event: 'sent', kind, ...data })
  }

  // The stock mock echoes the bot's own message back as an incoming one (like WeChat does)
  // but returns no id; this does the same and can return the id (returnIds).
  async echo (conversationId, something, mentionIdList = []) {
    const user = this.mocker.ContactMock.load(this.currentUserId)
    const id = nextId('sent')
    const payload = {
      id,
      talkerId: user.id,
      timestamp: Date.now(),
      type: PUPPET.types.Message.Text,
      text: something,
    }
    if (/@/.test(conversationId)) {
      payload.roomId = conversationId
      payload.mentionIdList = mentionIdList
    } else {
      payload.listenerId = conversationId
    }
    this.mocker.MessageMock.create(payload)
    this.emit('message', { messageId: id })
    return returnIds ? id : undefined
  }

  async messageSendText (conversationId, text, mentionIdList) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    this.record('text', { to: conversationId, text, mentions: mentionIdList || [] })
    return this.echo(conversationId, text, mentionIdList || [])
  }

  async messageSendFile (conversationId, file) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    const json = JSON.parse(JSON.stringify(file))
    this.record('file', { to: conversationId, name: file.name, mediaType: file.mediaType || '', size: json.base64 ? Buffer.from(json.base64, 'base64').length : -1 })
    await super.messageSendFile(conversationId, file) // the stock echo (an image/attachment message)
    return returnIds ? nextId('file') : undefined
  }

  async messageSendUrl (conversationId, urlLinkPayload) {
    if (!this.isLoggedIn) throw new Error('not logged in')
    this.record('url', { to: conversationId, ...urlLinkPayload })
    return returnIds ? nextId('url') : undefined
  }

  async friendshipAccept (friendshipId) {
    this.record('friendship_accept', { id: friendshipId })
    const payload = friendships.get(friendshipId)
    if (!payload) throw new Error('no such friendship ' + friendshipId)
  }

  async friendshipAdd (contactId, options) {
    this.record('friendship_add', { contactId, hello: (options && options.hello) || '' })
  }

  async friendshipRawPayload (id) {
    const payload = friendships.get(id)
    if (!payload) throw new Error('no such friendship ' + id)
    return payload
  }

  async roomAdd (roomId, contactId) {
    this.record('room_add', { room: roomId, contactId })
    const room = this.mocker.RoomMock.load(roomId)
    room.add(this.mocker.ContactMock.load(contactId)).by(this.mocker.ContactMock.load(this.currentUserId))
  }

  async roomDel (roomId, contactId) {
    this.record('room_del', { room: roomId, contactId })
    const room = this.mocker.RoomMock.load(roomId)
    room.remove(this.mocker.ContactMock.load(contactId)).by(this.mocker.ContactMock.load(this.currentUserId))
  }

  async roomInvitationRawPayload (id) {
    const payload = invitations.get(id)
    if (!payload) throw new Error('no such room invitation ' + id)
    return payload
  }

  async roomInvitationAccept (id) {
    this.record('room_invitation_accept', { id })
  }
}

const mocker = new mock.Mocker()
let user
mocker.use(() => {
  // Runs at every puppet start (a client's Start call): create the world once, log in.
  if (!user) {
    user = mocker.createContact({ ...BOT })
    for (const p of PEOPLE) mocker.createContact({ ...p })
    for (const r of ROOMS) mocker.createRoom({ ...r, memberIdList: [...r.memberIdList] })
  }
  if (AUTOLOGIN && !puppet.isLoggedIn) mocker.login(user)
  return () => {}
})
const puppet = new PondMock({ mocker })

const contact = (id) => mocker.ContactMock.load(id)
const room = (id) => mocker.RoomMock.load(id)
const ensureContact = (id, name, friend = true) => {
  try {
    return contact(id)
  } catch {
    return mocker.createContact({ id, name: name || id, friend })
  }
}

const commands = {
  // A contact says something to the bot, or in a room (optionally @-mentioning ids).
  say ({ from, room: roomId, text, mentions = [], messageId }) {
    const talker = contact(from)
    const id = messageId || nextId('msg')
    // A given id the service knows already is a replay (some puppets re-deliver after a
    // reconnect); a given id it does not know creates that message (replays after a restart).
    if (!mocker.cacheMessagePayload.has(id)) {
      const payload = { id, talkerId: talker.id, timestamp: Date.now(), type: PUPPET.types.Message.Text, text }
      if (roomId) {
        payload.roomId = roomId
        payload.mentionIdList = mentions
      } else {
        payload.listenerId = user.id
      }
      mocker.MessageMock.create(payload)
    }
    puppet.emit('message', { messageId: id })
    return { messageId: id }
  },
  // The account's owner types on the phone: a message from the bot's own account.
  selfSay ({ to, text }) {
    const target = /@/.test(to) ? room(to) : contact(to)
    user.say(text).to(target)
    return {}
  },
  image ({ from, room: roomId, name = 'photo.png' }) {
    const box = FileBox.fromBase64(Buffer.from('not really a png').toString('base64'), name)
    contact(from).say(box).to(roomId ? room(roomId) : user)
    return {}
  },
  link ({ from, url, title }) {
    const id = nextId('msg')
    mocker.MessageMock.create({ id, talkerId: from, listenerId: user.id, timestamp: Date.now(), type: PUPPET.types.Message.Url, text: title })
    puppet.emit('message', { messageId: id })
    return { messageId: id, url }
  },
  friendRequest ({ from, name, hello = '' }) {
    ensureContact(from, name, false)
    const id = nextId('fr')
    friendships.set(id, {
      id,
      contactId: from,
      hello,
      timestamp: Date.now(),
      type: PUPPET.types.Friendship.Receive,
      scene: PUPPET.types.FriendshipScene.QRCode,
      stranger: '',
      ticket: 'ticket-' + id,
    })
    puppet.emit('friendship', { friendshipId: id })
    return { friendshipId: id }
  },
  join ({ room: roomId, members, inviter }) {
    const people = members.map((m) => ensureContact(m.id || m, m.name))
    room(roomId).add(...people).by(contact(inviter))
    return {}
  },
  leave ({ room: roomId, members, remover }) {
    room(roomId).remove(...members.map(contact)).by(contact(remover))
    return {}
  },
  roomInvite ({ inviter, topic = '新群' }) {
    const id = nextId('ri')
    invitations.set(id, {
      id, inviterId: inviter, topic, avatar: '', invitation: '', memberCount: 3,
      memberIdList: [], timestamp: Date.now(), receiverId: user.id,
    })
    puppet.emit('room-invite', { roomInvitationId: id })
    return { roomInvitationId: id }
  },
  scan ({ qrcode, status = PUPPET.types.ScanStatus.Waiting }) {
    mocker.scan(qrcode, status)
    return {}
  },
  login () {
    if (!puppet.isLoggedIn) mocker.login(user)
    return {}
  },
  async logout () {
    await puppet.logout('test logout')
    return {}
  },
  config ({ returnIds: r }) {
    if (typeof r === 'boolean') returnIds = r
    return { returnIds }
  },
  status () {
    return { loggedIn: puppet.isLoggedIn, userId: puppet.isLoggedIn ? puppet.currentUserId : '' }
  },
}

const server = new PuppetServer({
  endpoint: `127.0.0.1:${PORT}`,
  puppet,
  token: TOKEN,
  tls: { disable: process.env.POND_MOCK_TLS !== '1' },
})
await server.start()
out({ event: 'ready', port: PORT, bot: BOT })

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (!line.trim()) return
  let request
  try {
    request = JSON.parse(line)
  } catch (e) {
    out({ ok: false, error: 'bad json: ' + e.message })
    return
  }
  const handler = commands[request.cmd]
  if (!handler) {
    out({ id: request.id, ok: false, error: 'unknown command ' + request.cmd })
    return
  }
  try {
    const result = await handler(request)
    out({ id: request.id, ok: true, ...result })
  } catch (e) {
    out({ id: request.id, ok: false, error: String(e && e.message) })
  }
}).on('close', async () => {
  // stdin closed: the test is done (or died); shut down.
  await server.stop().catch(() => {})
  process.exit(0)
})

const shutdown = async () => {
  await server.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
