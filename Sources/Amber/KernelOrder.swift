/// Elements kept sorted by how kcmp(2) orders the kernel objects they stand for, so that the one
/// that is the same object as a newcomer is found by binary search: n log n kcmp calls for n
/// elements, not n².
struct KernelOrderedList<Element> {
    private var elements: [Element] = []

    /// The element that is the same kernel object as a newcomer, or nil after inserting the one
    /// `make` makes. `order(existing)` is kcmp's answer for `existing` and the newcomer: 0 the
    /// same object, 1 `existing` sorts first, 2 it sorts after.
    mutating func match(order: (Element) throws -> Int, orInsert make: () throws -> Element) rethrows -> Element? {
        var low = 0
        var high = elements.count
        while low < high {
            let middle = (low + high) / 2
            switch try order(elements[middle]) {
            case 0: return elements[middle]
            case 1: low = middle + 1
            default: high = middle
            }
        }
        elements.insert(try make(), at: low)
        return nil
    }
}
