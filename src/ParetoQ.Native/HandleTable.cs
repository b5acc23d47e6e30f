using System.Collections.Concurrent;

namespace ParetoQ.Native;

/// <summary>
/// Opaque handles for C: a handle is a registry key, never an address, so a null, freed or made-up handle is looked up,
/// not dereferenced, and fails with PQ_ERR_INVALID_HANDLE instead of crashing. Keys are never reused.
/// </summary>
internal static class HandleTable
{
    private static readonly ConcurrentDictionary<nint, object> s_objects = new();
    private static long s_next = 0x10000;

    public static nint Add(object value)
    {
        nint handle = (nint)Interlocked.Add(ref s_next, 16);
        s_objects[handle] = value;
        return handle;
    }

    public static T? Get<T>(nint handle) where T : class => s_objects.TryGetValue(handle, out var value) ? value as T
        : null;

    public static T? Remove<T>(nint handle) where T : class
    {
        if (!s_objects.TryGetValue(handle, out var value) || value is not T typed) return null;
        return s_objects.TryRemove(new KeyValuePair<nint, object>(handle, value)) ? typed : null;
    }
}
