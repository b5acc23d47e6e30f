namespace ParetoQ.Runtime.Format;

/// <summary>A .pq file (or the bytes handed to its reader) is malformed. The message names the file, the tensor where
/// one is involved, and the problem.</summary>
public sealed class PqFormatException : Exception
{
    public string FilePath { get; }
    public string? Tensor { get; }

    public PqFormatException(string filePath, string? tensor, string problem, Exception? inner = null)
        : base(tensor is null ? $"{filePath}: {problem}" : $"{filePath}: tensor '{tensor}': {problem}", inner)
    {
        FilePath = filePath;
        Tensor = tensor;
    }
}
