using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// A .pq file as a conversion source, so one can be requantized (<c>paretoq-convert model.pq --bits 2 -o
/// small.pq</c>). Each tensor reads as the runtime's own fp32 values (<see cref="WeightPacker.DequantizeRow"/>), so
/// <c>--bits auto</c> recovers every grid exactly and any other choice quantizes those values round-to-nearest.
/// </summary>
public sealed class PqCheckpoint : ISourceCheckpoint
{
    private readonly PqFile _file;
    private readonly Dictionary<string, (SourceTensor Source, PqTensor Tensor)> _byName;

    public string Directory { get; }
    public IReadOnlyList<string> Files => [_file.Path];
    public IReadOnlyList<SourceTensor> Tensors { get; }
    public ModelConfig Config { get; }

    private PqCheckpoint(PqFile file)
    {
        _file = file;
        Config = ModelConfig.Parse(file.Config, file.Path);
        Directory = Path.GetDirectoryName(Path.GetFullPath(file.Path))!;
        _byName = new Dictionary<string, (SourceTensor, PqTensor)>(StringComparer.Ordinal);
        var tensors = new List<SourceTensor>();
        foreach (var t in file.Tensors)
        {
            // Float formats keep their dtype (so auto keeps their precision); packed grids read exactly as fp32.
            var dtype = t.Format switch { WeightFormat.BF16 => SourceDType.BF16, WeightFormat.F16 => SourceDType.F16, _
                => SourceDType.F32 };
            var source = new SourceTensor(t.Name, dtype, [.. t.Shape.Select(d => (long)d)], file.Path, t.Offset,
                t.Length);
            _byName[t.Name] = (source, t);
            tensors.Add(source);
        }
        Tensors = tensors;
    }

    public static PqCheckpoint Open(string path)
    {
        var file = PqFile.Open(path);
        try
        {
            return new PqCheckpoint(file);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool TryGet(string name, out SourceTensor tensor)
    {
        bool found = _byName.TryGetValue(name, out var entry);
        tensor = entry.Source;
        return found;
    }

    public void Read(SourceTensor tensor, long start, Span<float> destination)
    {
        if (!_byName.TryGetValue(tensor.Name, out var entry) || !ReferenceEquals(entry.Source, tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' does not belong to {_file.Path}", nameof(tensor));
        var t = entry.Tensor;
        SourceTensorReader.CheckRange(tensor, start, destination.Length);
        if (!WeightFormats.IsPacked(t.Format))
        {
            FloatCodec.Decode(t.Format, t.Data, start, destination);
            return;
        }
        int rows = t.Shape[0], cols = t.Shape[1];
        var layout = new PackedLayout(t.Format, rows, cols);
        var codes = new byte[layout.PaddedCols];
        var row = new float[cols];
        for (int done = 0; done < destination.Length;)
        {
            int r = (int)((start + done) / cols), from = (int)((start + done) % cols);
            int n = Math.Min(cols - from, destination.Length - done);
            WeightPacker.DequantizeRow(layout, t.Data, r, codes, row);
            row.AsSpan(from, n).CopyTo(destination.Slice(done, n));
            done += n;
        }
    }

    public void Dispose() => _file.Dispose();

    /// <summary>The converter's view: the file's own config and embedded tokenizer, unchanged.</summary>
    public (HfConfig Config, HfTokenizer Tokenizer) Describe()
    {
        var info = _file.Tokenizer;
        var hf = new HfConfig(SourceFamily.Pq, Config, null, info.BosId >= 0 ? info.BosId : null, info.EosIds,
            info.PadId >= 0 ? info.PadId : null, [$"requantized from {Path.GetFileName(_file.Path)}"]);
        var tokenizer = new HfTokenizer(info, _file.TokenizerBytes.ToArray(),
            $"the embedded {info.Kind} tokenizer of {Path.GetFileName(_file.Path)}, copied", []);
        return (hf, tokenizer);
    }
}
