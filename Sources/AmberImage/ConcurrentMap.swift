import Dispatch

extension Array where Element: Sendable {
    /// `transform` of every element, computed on every CPU at once, in the array's order: for
    /// work that does not depend on one another, such as reads of /proc or halves of a file.
    public func concurrentMap<T>(_ transform: @Sendable (Element) -> T) -> [T] {
        guard !isEmpty else { return [] }
        let elements = self
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            // Each iteration initializes its own slot only.
            nonisolated(unsafe) let slots = buffer.baseAddress!
            DispatchQueue.concurrentPerform(iterations: elements.count) { index in
                (slots + index).initialize(to: transform(elements[index]))
            }
            initialized = elements.count
        }
    }
}
