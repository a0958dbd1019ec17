import CUring
import Glibc
import SystemPackage

// The tasks that list a walk's tree, and the bounded channels through which
// they hand entries to the walk's iterator.
//
// One task lists a subtree depth first, one system call after another,
// as a C loop would, and hands over its entries a batch at a time: the
// iterator takes entries without waiting while the task is ahead, and the
// two meet only once per batch. When the walk may list more subtrees at
// once, a task that reaches a subdirectory starts another task for it and
// puts that task's channel in its own stream where the subdirectory's
// entries belong; the iterator reads that channel whole before going on.

/// What the listing tasks need of the walk's options.
struct WalkOptions: Sendable {
    let withMetadata: Bool
    let followingLinks: Bool
    /// Without `onError` the first failure ends the walk, so a task stops
    /// listing once it has handed one over.
    let stopsAtFailure: Bool
}

/// The device and inode of a directory, to notice a link that leads back
/// into the path being walked.
struct DirectoryIdentity: Sendable, Hashable {
    let device: UInt64
    let inode: UInt64
}

/// What the entries of one batch of a walk point into: their names,
/// NUL-terminated one after another in one buffer; the directories they
/// are in; and, when the walk describes entries, the `statx` records the
/// kernel filled in place. So an entry is one reference and a few numbers,
/// cheap to hand over, and builds its name, path and metadata only when
/// asked for them.
final class WalkBatchStore: @unchecked Sendable {
    // `@unchecked Sendable`: only the listing task writes, and only before
    // it hands the batch over through its channel's lock, which orders
    // those writes before any read; afterwards nothing here changes.
    private var names: UnsafeMutablePointer<CChar>
    private var namesCapacity: Int
    private var namesCount = 0
    private var directories: [FilePath] = []
    private var records: UnsafeMutablePointer<statx>?
    private var recordsCapacity: Int
    private var recordsCount = 0

    /// A store for about `entries` entries (it grows if need be).
    init(entries: Int) {
        namesCapacity = max(entries * 16, 256)
        names = .allocate(capacity: namesCapacity)
        recordsCapacity = max(entries, 16)
    }

    deinit {
        names.deallocate()
        records?.deallocate()
    }

    // MARK: Filled by the listing task

    /// Copies the NUL-terminated `name` in; returns where it starts.
    func append(name: UnsafePointer<CChar>) -> Int32 {
        let length = strlen(name) + 1
        if namesCount + length > namesCapacity {
            let grown = max(namesCapacity * 2, namesCount + length)
            let larger = UnsafeMutablePointer<CChar>.allocate(capacity: grown)
            larger.initialize(from: names, count: namesCount)
            names.deallocate()
            names = larger
            namesCapacity = grown
        }
        (names + namesCount).initialize(from: name, count: length)
        defer { namesCount += length }
        return Int32(namesCount)
    }

    /// Keeps `directory`; returns its number.
    func append(directory: FilePath) -> Int32 {
        directories.append(directory)
        return Int32(directories.count - 1)
    }

    /// Where the next entry's `statx` record goes; `keepRecord` keeps it.
    func nextRecord() -> UnsafeMutablePointer<statx> {
        if records == nil {
            records = .allocate(capacity: recordsCapacity)
        } else if recordsCount == recordsCapacity {
            let grown = recordsCapacity * 2
            let larger = UnsafeMutablePointer<statx>.allocate(capacity: grown)
            larger.initialize(from: records!, count: recordsCount)
            records!.deallocate()
            records = larger
            recordsCapacity = grown
        }
        return records! + recordsCount
    }

    /// Keeps the record `nextRecord` pointed at, filled; returns its number.
    func keepRecord() -> Int32 {
        defer { recordsCount += 1 }
        return Int32(recordsCount)
    }

    // MARK: Read by the walk

    /// The name that starts at `offset`.
    func component(at offset: Int32) -> FilePath.Component {
        // The listing took only names that make a component (never empty,
        // never with a slash, never "." or ".."), so this always succeeds.
        FilePath.Component(platformString: names + Int(offset)) ?? "?"
    }

    /// Whether the name at `offset` equals `other`'s at `otherOffset`.
    func sameName(at offset: Int32, as other: WalkBatchStore, at otherOffset: Int32) -> Bool {
        strcmp(names + Int(offset), other.names + Int(otherOffset)) == 0
    }

    /// Feeds the bytes of the name at `offset` to `hasher`.
    func hashName(at offset: Int32, into hasher: inout Hasher) {
        let start = names + Int(offset)
        hasher.combine(bytes: UnsafeRawBufferPointer(start: start, count: strlen(start)))
    }

    /// The directory numbered `index`.
    func directory(at index: Int32) -> FilePath { directories[Int(index)] }

    /// The metadata in the record numbered `index`.
    func metadata(at index: Int32) -> FileMetadata { FileMetadata(records![Int(index)]) }
}

/// What a listing task hands the walk, in the walk's order.
enum WalkItem: Sendable {
    case entry(DirectoryWalk.Entry)
    /// A subdirectory listed by a task of its own: its entries are read from
    /// this channel, here, before the items after it.
    case subtree(WalkChannel)
    /// A subdirectory that could not be opened, listed or described: given
    /// to `onError`, or thrown.
    case failure(UringError)
    /// The root could not be opened: always thrown.
    case rootFailure(UringError)
    /// A place in a batch whose item the walk has already handed out.
    case taken
}

/// A bounded queue of batches from one listing task to the walk.
///
/// A batch changes hands only inside the lock, moved into and out of the
/// queue, so the side that takes it holds the only reference and can take
/// its items apart without copying them.
final class WalkChannel: Sendable {
    /// Items a task gathers before it hands them over.
    static let itemsPerBatch = 256
    /// Items in a task's first batch: fewer, so that the walk's loop can
    /// start while the task lists on.
    static let itemsInFirstBatch = 32
    /// Batches that may wait for the walk before the task waits too.
    static let batchesAhead = 8

    private struct State: Sendable {
        var batches = FIFO<[WalkItem]>()
        /// The task has handed over everything.
        var finished = false
        /// The walk wants no more (it ended, or the task was cancelled).
        var stopped = false
        /// The walk's task was cancelled while it waited here.
        var consumerCancelled = false
        /// The walk, waiting for a batch or the end.
        var consumer: UnsafeContinuation<Void, Never>?
        /// The task, waiting for room.
        var producer: UnsafeContinuation<Void, Never>?
    }

    private let state = Locked(State())

    // MARK: The walk's side

    /// The next batch; nil once the task has finished and all is taken.
    ///
    /// - Throws: `CancellationError` if the calling task is cancelled while
    ///   nothing is ready.
    nonisolated(nonsending) func next() async throws -> [WalkItem]? {
        while true {
            let (batch, finished, producer) = state.withLock { state in
                let batch = state.batches.popFirst()
                defer { if batch != nil { state.producer = nil } }
                return (batch, state.finished, batch != nil ? state.producer : nil)
            }
            producer?.resume()
            if let batch { return batch }
            if finished { return nil }
            try await waitForBatch()
        }
    }

    /// Waits until a batch or the end is there.
    private nonisolated(nonsending) func waitForBatch() async throws {
        try await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let parked = state.withLock { state in
                    guard state.batches.isEmpty && !state.finished && !state.consumerCancelled else { return false }
                    state.consumer = continuation
                    return true
                }
                if !parked { continuation.resume() }
            }
            // Woken by cancellation with nothing to take: the walk ends.
            if Task.isCancelled && state.withLock({ $0.batches.isEmpty && !$0.finished }) {
                throw CancellationError()
            }
        } onCancel: {
            let parked = state.withLock { state in
                state.consumerCancelled = true
                defer { state.consumer = nil }
                return state.consumer
            }
            parked?.resume()
        }
    }

    // MARK: The listing task's side

    /// Moves `batch` (left empty) to the walk, waiting while
    /// `batchesAhead` batches wait already. False once the walk wants no
    /// more.
    nonisolated(nonsending) func send(_ batch: inout [WalkItem]) async -> Bool {
        enum Outcome { case queued, stopped, full }
        while true {
            let (outcome, consumer): (Outcome, UnsafeContinuation<Void, Never>?) = state.withLock { state in
                if state.stopped { return (.stopped, nil) }
                guard state.batches.count < Self.batchesAhead else { return (.full, nil) }
                var moved: [WalkItem] = []
                swap(&moved, &batch)
                state.batches.append(moved)
                defer { state.consumer = nil }
                return (.queued, state.consumer)
            }
            consumer?.resume()
            switch outcome {
            case .queued: return true
            case .stopped: return false
            case .full: await waitForRoom()
            }
        }
    }

    /// Waits until the walk takes a batch, or wants no more.
    private nonisolated(nonsending) func waitForRoom() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let parked = state.withLock { state in
                    guard !state.stopped && state.batches.count >= Self.batchesAhead else { return false }
                    state.producer = continuation
                    return true
                }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            stop()
        }
    }

    /// The walk wants no more from this channel's task.
    func stop() {
        let waiting = state.withLock { state in
            state.stopped = true
            defer { state.producer = nil }
            return state.producer
        }
        waiting?.resume()
    }

    /// The task has handed over everything it will.
    func finish() {
        let waiting = state.withLock { state in
            state.finished = true
            defer { state.consumer = nil }
            return state.consumer
        }
        waiting?.resume()
    }
}

/// A walk's listing tasks: how many run, and the means to end them all.
final class WalkProducers: Sendable {
    private struct State: Sendable {
        var running = 0
        var tasks: [Int: Task<Void, Never>] = [:]
        /// Tasks that ended before they were recorded.
        var endedEarly: Set<Int> = []
        var lastID = 0
        /// The walk is over: no task starts, and any that does is cancelled.
        var ended = false
    }

    private let state = Locked(State())
    /// The most tasks at once.
    let limit: Int

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Starts the task that lists the walk's root into `channel`.
    func startRoot(_ root: FilePath, options: WalkOptions, into channel: WalkChannel) {
        state.withLock { $0.running += 1 }
        start { producers in
            var producer = WalkProducer(options: options, channel: channel, producers: producers, ancestors: [])
            await producer.run(root: root)
        }
    }

    /// Takes a place for another task, if fewer than `limit` run and the
    /// walk goes on; the caller then calls `start` at once.
    func reserve() -> Bool {
        state.withLock { state in
            guard !state.ended && state.running < limit else { return false }
            state.running += 1
            return true
        }
    }

    /// Runs `body` in a task of its own on Swift's global executor, in a
    /// place already taken.
    func start(_ body: @escaping @Sendable (WalkProducers) async -> Void) {
        let id = state.withLock { state in
            state.lastID += 1
            return state.lastID
        }
        let task = Task(executorPreference: globalConcurrentExecutor) {
            await body(self)
            self.state.withLock { state in
                state.running -= 1
                if state.tasks.removeValue(forKey: id) == nil { state.endedEarly.insert(id) }
            }
        }
        let cancelNow = state.withLock { state in
            if state.endedEarly.remove(id) != nil { return false }
            state.tasks[id] = task
            return state.ended
        }
        if cancelNow { task.cancel() }
    }

    /// Cancels every task, without waiting (the walk was dropped).
    func cancelAll() {
        for task in takeAll() { task.cancel() }
    }

    /// Cancels every task and waits until all have stopped, so every
    /// descriptor they opened is closed.
    nonisolated(nonsending) func endAll() async {
        // A task awaited here may have started another just before it saw
        // the end; that one is recorded before its starter finishes, so
        // the next round finds it.
        while true {
            let tasks = takeAll()
            if tasks.isEmpty { return }
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
        }
    }

    private func takeAll() -> [Task<Void, Never>] {
        state.withLock { state in
            state.ended = true
            defer { state.tasks = [:] }
            return Array(state.tasks.values)
        }
    }
}

/// Lists one subtree into its channel, depth first, in one task.
///
/// A noncopyable value the task owns, so the listing loop works on its
/// state in place, without the access checks a class's properties get.
struct WalkProducer: ~Copyable {
    /// A directory being listed: the `getdents64` buffer of its depth and
    /// how far into it the listing is.
    private struct Frame {
        let descriptor: OwnedDescriptor
        /// `descriptor`'s number, read without touching the object.
        let fd: Int32
        let path: FilePath
        /// The depth of this directory's entries.
        let depth: Int
        let identity: DirectoryIdentity?
        var filled = 0
        var offset = 0
        var finished = false
    }

    private let options: WalkOptions
    private let channel: WalkChannel
    private let producers: WalkProducers
    /// The directories above this task's subtree (when following links).
    private let ancestors: [DirectoryIdentity]
    private var frames: [Frame] = []
    /// One listing buffer per frame depth, kept for the task's life.
    private var buffers: [UnsafeMutableRawPointer] = []
    private var batch: [WalkItem] = []
    /// How many items make `batch` full: fewer for the first.
    private var batchLimit = WalkChannel.itemsInFirstBatch
    /// What the entries in `batch` point into.
    private var store = WalkBatchStore(entries: WalkChannel.itemsInFirstBatch)
    /// The number in `store` of the directory at the top of `frames`, once
    /// kept there; -1 until then (and after `frames` or `store` change).
    private var directoryInStore: Int32 = -1

    init(options: WalkOptions, channel: WalkChannel, producers: WalkProducers, ancestors: [DirectoryIdentity]) {
        self.options = options
        self.channel = channel
        self.producers = producers
        self.ancestors = ancestors
        batch.reserveCapacity(WalkChannel.itemsPerBatch)
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    /// Opens the walk's root, lists everything under it, and finishes the
    /// channel.
    nonisolated(nonsending) mutating func run(root: FilePath) async {
        switch open(parent: nil, name: nil, path: root, depth: 1) {
        case .success(let frame):
            push(frame)
            await list()
        case .failure(let error):
            _ = await add(.rootFailure(error))
        }
        await finish()
    }

    /// Lists everything under a subdirectory its parent's task opened, and
    /// finishes the channel.
    private nonisolated(nonsending) mutating func run(from frame: consuming Frame) async {
        push(frame)
        await list()
        await finish()
    }

    /// Closes every descriptor still open, hands over the last batch, and
    /// tells the walk this task is done, in that order: when the walk hears
    /// the end, nothing of this task's is open.
    private nonisolated(nonsending) mutating func finish() async {
        frames = []
        if !Task.isCancelled { _ = await flush() }
        channel.finish()
    }

    private mutating func push(_ frame: consuming Frame) {
        if buffers.count == frames.count {
            buffers.append(.allocate(byteCount: DirectoryRecord.bufferSize, alignment: 8))
        }
        frames.append(frame)
        directoryInStore = -1
    }

    /// Closes the directory at the top of `frames`.
    private mutating func pop() {
        frames.removeLast()
        directoryInStore = -1
    }

    /// Lists the frames' directories until none is left, the walk wants no
    /// more, or a failure ends it.
    private nonisolated(nonsending) mutating func list() async {
        while !frames.isEmpty {
            let top = frames.count - 1
            let buffer = buffers[top]
            guard frames[top].offset < frames[top].filled else {
                if frames[top].finished {
                    pop()
                    continue
                }
                if Task.isCancelled { return }
                do {
                    let filled = try DirectoryRecord.list(frames[top].fd, into: buffer, path: frames[top].path)
                    frames[top].filled = filled
                    frames[top].offset = 0
                    frames[top].finished = filled == 0
                } catch {
                    pop()
                    guard await add(.failure(error)), !options.stopsAtFailure else { return }
                }
                continue
            }
            let record = DirectoryRecord(buffer + frames[top].offset)
            frames[top].offset += record.length
            // Names the kernel lists are never empty and never hold a slash.
            if record.isSelfOrParent || record.name[0] == 0 { continue }
            let fd = frames[top].fd
            var type = FileType(directoryType: record.kind)
            var described: Int32 = -1
            var failure: UringError? = nil
            if options.withMetadata {
                // statx fills the store's next record in place.
                let info = store.nextRecord()
                switch record.describe(in: fd, followingLinks: options.followingLinks, into: info) {
                case .gone: continue  // since it was listed: left out
                case .undescribable(let code):
                    // Listed without metadata, and its error follows it.
                    let failed = FilePath.Component(platformString: record.name).map { frames[top].path.appending($0) }
                    failure = .system(.metadata, code, path: failed ?? frames[top].path)
                case .described:
                    described = store.keepRecord()
                    type = FileType(mode: info.pointee.stx_mode)
                }
            }
            let depth = frames[top].depth
            if failure == nil && described < 0 && (type == .unknown || (type == .symbolicLink && options.followingLinks)) {
                do {
                    // Gone since it was listed: left out.
                    guard let resolved = try WalkProducer.type(of: record.name, in: fd, path: frames[top].path, options: options)
                    else { continue }
                    type = resolved
                } catch {
                    failure = error
                }
            }
            if directoryInStore < 0 { directoryInStore = store.append(directory: frames[top].path) }
            let listed = DirectoryWalk.Entry(
                store: store, directory: directoryInStore, name: store.append(name: record.name), type: type,
                depth: depth, record: described)
            guard type == .directory && failure == nil else {
                // The common case, added without an async call.
                batch.append(.entry(consume listed))
                if batch.count >= batchLimit {
                    guard await flush() else { return }
                }
                if let failure {
                    guard await add(.failure(failure)), !options.stopsAtFailure else { return }
                }
                continue
            }
            let name = listed.name
            guard await add(.entry(listed)) else { return }
            guard await enter(name, in: frames[top].fd, path: frames[top].path.appending(name), depth: depth + 1)
            else { return }
        }
    }

    /// Goes into the subdirectory `name`: opens it here, then lists it in
    /// a task of its own if there is room for one, else here, next. False
    /// if the listing must stop.
    private nonisolated(nonsending) mutating func enter(_ name: FilePath.Component, in parent: Int32, path: FilePath, depth: Int) async -> Bool {
        let frame: Frame
        switch open(parent: parent, name: name, path: path, depth: depth) {
        case .success(let opened): frame = opened
        case .failure(let error): return await add(.failure(error)) && !options.stopsAtFailure
        }
        if let identity = frame.identity,
            ancestors.contains(identity) || frames.contains(where: { $0.identity == identity })
        {
            return await add(.failure(.system(.listDirectory, ELOOP, path: path))) && !options.stopsAtFailure
        }
        guard producers.reserve() else {
            push(frame)
            return true
        }
        let channel = WalkChannel()
        let options = options
        let ancestors = options.followingLinks ? ancestors + frames.compactMap(\.identity) : []
        // The new task gets the bare number, not this task's owner of it,
        // so that nothing here keeps the directory open once that task has
        // closed it. A task always runs, cancelled or not, so it always
        // takes the number over.
        let fd = frame.descriptor.detach()
        let identity = frame.identity
        producers.start { producers in
            var producer = WalkProducer(options: options, channel: channel, producers: producers, ancestors: ancestors)
            await producer.run(from: Frame(descriptor: OwnedDescriptor(fd), fd: fd, path: path, depth: depth, identity: identity))
        }
        return await add(.subtree(channel))
    }

    /// Opens a directory to list: below the root only by name in its open
    /// parent, and never through a link unless the walk follows them.
    private func open(
        parent: Int32?, name: FilePath.Component?, path: FilePath, depth: Int
    ) -> Result<Frame, UringError> {
        let following = options.followingLinks
        let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (parent != nil && !following ? O_NOFOLLOW : 0)
        let fd: Int32
        if let parent, let name {
            fd = name.withPlatformString { openat(parent, $0, flags) }
        } else {
            fd = path.withPlatformString { openat(AT_FDCWD, $0, flags) }
        }
        guard fd >= 0 else { return .failure(.system(.open, Glibc.errno, path: path)) }
        var identity: DirectoryIdentity? = nil
        if following {
            var info = stat()
            if fstat(fd, &info) == 0 { identity = DirectoryIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) }
        }
        return .success(Frame(descriptor: OwnedDescriptor(fd), fd: fd, path: path, depth: depth, identity: identity))
    }

    /// The type of `name`, which the directory did not record (or which is
    /// a link the walk follows): a link to nothing stays a link. Nil if
    /// `name` is gone since the directory was listed.
    private static func type(
        of name: UnsafePointer<CChar>, in directory: Int32, path: FilePath, options: WalkOptions
    ) throws(UringError) -> FileType? {
        var info = statx()
        var status: Int32 = -ENOENT
        if options.followingLinks { status = cu_statx(directory, name, 0, UInt32(STATX_TYPE), &info) }
        if status == -ENOENT { status = cu_statx(directory, name, AT_SYMLINK_NOFOLLOW, UInt32(STATX_TYPE), &info) }
        if status == -ENOENT { return nil }
        guard status == 0 else {
            let failed = FilePath.Component(platformString: name).map { path.appending($0) } ?? path
            throw .system(.metadata, -status, path: failed)
        }
        return FileMetadata(info).type
    }

    /// Adds `item` to the batch, handing the batch over when it is full.
    /// False once the walk wants no more.
    private nonisolated(nonsending) mutating func add(_ item: consuming WalkItem) async -> Bool {
        batch.append(consume item)
        guard batch.count >= batchLimit else { return true }
        return await flush()
    }

    /// Hands over what the batch holds. False once the walk wants no more.
    private nonisolated(nonsending) mutating func flush() async -> Bool {
        guard !batch.isEmpty else { return true }
        if Task.isCancelled { return false }
        store = WalkBatchStore(entries: WalkChannel.itemsPerBatch)
        directoryInStore = -1
        batchLimit = WalkChannel.itemsPerBatch
        let going = await channel.send(&batch)
        batch.reserveCapacity(WalkChannel.itemsPerBatch)
        return going
    }
}
