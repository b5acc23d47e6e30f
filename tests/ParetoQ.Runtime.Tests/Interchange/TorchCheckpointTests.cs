using System.Text;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;
using static ParetoQ.TestModels.SafetensorsWriter;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The pytorch_model.bin reader: the restricted unpickler and the strict zip reader. Hostile pickles are written opcode
/// by opcode; each must be refused with a message naming the opcode, global or field, and nothing may run or allocate
/// beyond the file's size.
/// </summary>
public sealed class TorchCheckpointTests
{
    private static readonly Tensor[] Sample =
    [
        new("model.embed_tokens.weight", SourceDType.BF16, [7, 5], SafetensorsTests.Values(35, 1)),
        new("model.norm.weight", SourceDType.F32, [5], SafetensorsTests.Values(5, 2)),
        new("h.f16", SourceDType.F16, [3, 2, 2], SafetensorsTests.Values(12, 3)),
        new("lm_head.weight", SourceDType.BF16, [7, 5], SafetensorsTests.Values(35, 1)),
    ];

    private static float RoundTrip(SourceDType dtype, float v) => dtype switch
    {
        SourceDType.BF16 => FloatCodec.Bf16ToSingle(FloatCodec.SingleToBf16(v)),
        SourceDType.F16 => (float)(Half)v,
        _ => v,
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Reads_a_torch_save_state_dict_with_shared_storage(bool zip64)
    {
        using var dir = new TempDir();
        TorchCheckpointWriter.Write(dir.File(TorchCheckpoint.SingleFile), Sample, new Dictionary<string,
            string> { ["lm_head.weight"] = "model.embed_tokens.weight" }, zip64);
        using var ckpt = SourceCheckpoint.Open(dir.Path);
        Assert.Equal(Sample.Select(t => t.Name), ckpt.Tensors.Select(t => t.Name));
        foreach (var t in Sample)
        {
            Assert.True(ckpt.TryGet(t.Name, out var source));
            Assert.Equal(t.Shape, source.Shape);
            Assert.Equal(t.DType, source.DType);
            Assert.Equal(t.Values.Select(v => RoundTrip(t.DType, v)), ckpt.ReadAll(source));
        }
        Assert.True(ckpt.TryGet("lm_head.weight", out var head));
        Assert.True(ckpt.TryGet("model.embed_tokens.weight", out var emb));
        Assert.Equal(emb.Offset, head.Offset); // tied weights are one storage
    }

    [Fact]
    public void Sharded_bin_checkpoints_follow_their_index()
    {
        using var dir = new TempDir();
        TorchCheckpointWriter.Write(dir.File("pytorch_model-00001-of-00002.bin"), Sample[..2]);
        TorchCheckpointWriter.Write(dir.File("pytorch_model-00002-of-00002.bin"), Sample[2..]);
        File.WriteAllText(dir.File(TorchCheckpoint.IndexFile), "{\"metadata\":{},\"weight_map\":{" + string.Join(',',
            Sample.Select((t, i) => $"\"{t.Name}\":\"pytorch_model-0000{(i < 2 ? 1 : 2)}-of-00002.bin\"")) + "}}");
        using var ckpt = SourceCheckpoint.Open(dir.Path);
        Assert.Equal(4, ckpt.Tensors.Count);
        Assert.Equal(2, ckpt.Files.Count);
    }

    private static byte[] Archive(byte[] pickle, params (string, byte[])[] more) =>
        TorchCheckpointWriter.Zip(new[] { ("archive/data.pkl", pickle) }.Concat(more));

    private static string Refusal(byte[] file)
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File(TorchCheckpoint.SingleFile), file);
        return Assert.Throws<CheckpointException>(() => { using var c = SourceCheckpoint.Open(dir.Path); }).Message;
    }

    private static byte[] Tensor(string storageClass = "BFloat16Storage", long numel = 4, long offset = 0,
        long[]? shape = null, long[]? stride = null, string key = "0") =>
        new PickleBuilder().Proto(2).Op('}').Unicode("w").Global("torch._utils", "_rebuild_tensor_v2").Op('(')
            .Op('(').Unicode("storage").Global("torch",
                storageClass).Unicode(key).Unicode("cpu").Int(numel).Op('t').Op('Q')
            .Int(offset).Tuple(shape ?? [2, 2]).Tuple(stride ?? [2, 1]).Op(0x89).Global("collections",
                "OrderedDict").Op(')').Op('R')
            .Op('t').Op('R').Op('s').Op('.').ToArray();

    public static TheoryData<string, byte[], string> HostilePickles() => new()
    {
        { "os.system",
            new PickleBuilder().Proto(2).Global("posix",
            "system").Unicode("touch /tmp/pwned").Op(0x85).Op('R').Op('.').ToArray(),
            "global 'posix.system' is not allowed" },
        { "builtins.eval via STACK_GLOBAL",
            new PickleBuilder().Proto(4).Unicode("builtins").Unicode("eval").Op(0x93).ToArray(),
            "global 'builtins.eval' is not allowed" },
        { "INST opcode",
            new PickleBuilder().Proto(2).Op('(').Raw(Encoding.ASCII.GetBytes("ios\nsystem\n")).Op('.').ToArray(),
            "opcode 0x69 ('i') is not allowed" },
        { "OBJ opcode", new PickleBuilder().Proto(2).Op('(').Op('o').ToArray(), "opcode 0x6f ('o') is not allowed" },
        { "EXT1 opcode", new PickleBuilder().Proto(2).Raw(0x82, 1).ToArray(), "opcode 0x82" },
        { "OrderedDict called with arguments",
            new PickleBuilder().Proto(2).Global("collections",
            "OrderedDict").Unicode("x").Op(0x85).Op('R').Op('.').ToArray(),
            "collections.OrderedDict called with 1 arguments" },
        { "integer storage", Tensor("LongStorage"), "global 'torch.LongStorage' is not allowed" },
        { "unknown memo slot", new PickleBuilder().Proto(2).Raw((byte)'h', 9).Op('.').ToArray(),
            "memo slot 9 was never stored" },
        { "huge string length", new PickleBuilder().Proto(2).Op('X').Raw(0xff, 0xff, 0xff, 0x7f).ToArray(),
            "runs past the end of the pickle" },
        { "huge LONG1", new PickleBuilder().Proto(2).Raw(0x8a, 200).ToArray(), "a 200-byte integer" },
        { "truncated", Tensor()[..^1], "ends without STOP" },
        { "truncated inside a string", Tensor()[..7], "runs past the end of the pickle" },
        { "stack underflow", new PickleBuilder().Proto(2).Op('R').ToArray(), "stack underflow" },
        { "not a mapping", new PickleBuilder().Proto(2).Op(']').Op('.').ToArray(), "holds a list, not a state dict" },
        { "non-string key", new PickleBuilder().Proto(2).Op('}').Int(3).Int(4).Op('s').Op('.').ToArray(),
            "key is the integer 3" },
        { "nested dict", new PickleBuilder().Proto(2).Op('}').Unicode("state_dict").Op('}').Op('s').Op('.').ToArray(),
            "nested checkpoints are not supported" },
        { "path in storage key", Tensor(key: "../x"), "is not a plain name" },
        { "non-contiguous stride", Tensor(stride: [1, 2]), "not contiguous row-major" },
        { "view past its storage", Tensor(offset: 2), "lie outside its storage" },
        { "negative size", Tensor(shape: [-2, 2]), "is invalid" },
        { "storage size mismatch", Tensor(numel: 6), "holds 8 bytes, not the 6 × 2" },
        { "two objects at STOP", new PickleBuilder().Proto(2).Op('}').Op('}').Op('.').ToArray(),
            "STOP with 2 objects" },
    };

    [Theory]
    [MemberData(nameof(HostilePickles))]
    public void Hostile_pickles_are_refused_by_name(string why, byte[] pickle, string expected)
    {
        _ = why;
        string message = Refusal(Archive(pickle, ("archive/data/0", new byte[8])));
        Assert.Contains(expected, message);
        Assert.False(File.Exists("/tmp/pwned"));
    }

    [Fact]
    public void Damaged_archives_are_refused()
    {
        var good = Archive(Tensor(), ("archive/data/0", new byte[8]));
        Assert.Contains("no zip signature", Refusal("hello world"u8.ToArray()));
        Assert.Contains("legacy", Refusal([0x80, 0x02, 0x8a, 0x0a, 0, 0]));
        Assert.Contains("storage data/0 is not in the archive", Refusal(Archive(Tensor())));
        Assert.Contains("expected one data.pkl member, found 0",
            Refusal(TorchCheckpointWriter.Zip([("archive/other", new byte[3])])));
        Assert.Contains("appears twice",
            Refusal(TorchCheckpointWriter.Zip([("a/data.pkl", Tensor()), ("a/data/0", new byte[8]),
            ("a/data/0", new byte[8])])));
        Assert.Contains("only little-endian",
            Refusal(Archive(Tensor(), ("archive/data/0", new byte[8]), ("archive/byteorder", "big"u8.ToArray()))));

        var flipped = (byte[])good.Clone();
        // the local header's padding field, then the data
        int extra = Find(flipped, "archive/data/0"u8) + "archive/data/0".Length;
        flipped[extra + 4 + flipped[extra + 2]] ^= 1;
        Assert.Contains("fails its CRC-32 check", Refusal(flipped));

        var compressed = (byte[])good.Clone();
        compressed[FindLast(compressed, "archive/data.pkl"u8) - 46 + 10] = 8; // central directory: method deflate
        Assert.Contains("is compressed (method 8)", Refusal(compressed));
        Assert.Contains("end-of-central-directory", Refusal(good[..^10]));
    }

    [Fact]
    public void Random_corruptions_never_escape_as_other_exceptions()
    {
        using var dir = new TempDir();
        string path = dir.File(TorchCheckpoint.SingleFile);
        using (var buffer = new TempDir())
        {
            TorchCheckpointWriter.Write(buffer.File("x.bin"), Sample, new Dictionary<string,
                string> { ["lm_head.weight"] = "model.embed_tokens.weight" });
            var good = File.ReadAllBytes(buffer.File("x.bin"));
            var rng = new Random(99);
            int refused = 0;
            for (int i = 0; i < 1500; i++)
            {
                var bad = (byte[])good.Clone();
                if (rng.Next(4) == 0) bad = bad[..rng.Next(bad.Length)];
                else for (int k = rng.Next(1, 4); k > 0; k--) bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(path, bad);
                try
                {
                    using var c = SourceCheckpoint.Open(dir.Path);
                    foreach (var t in c.Tensors) c.ReadAll(t);
                }
                catch (CheckpointException)
                {
                    refused++;
                }
            }
            // Every member is covered by a CRC, so nearly every flip is caught (flips in unused zip fields are not).
            Assert.True(refused > 1200, $"only {refused} of 1500 corruptions were refused");
        }
    }

    private static int Find(byte[] hay, ReadOnlySpan<byte> needle) => hay.AsSpan().IndexOf(needle);

    private static int FindLast(byte[] hay, ReadOnlySpan<byte> needle) => hay.AsSpan().LastIndexOf(needle);
}
