namespace ParetoQ.Runtime.Tests;

/// <summary>The real models and text in <c>../shared/data</c> beside the repository (see its SOURCES.md files), read in
/// place and never copied into the repository.</summary>
internal static class SharedData
{
    public static string Root => System.IO.Path.GetFullPath(System.IO.Path.Combine(TestData.RepoRoot(), "..", "shared",
        "data"));

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);
}

/// <summary>A test on <c>../shared/data</c>: skipped, saying so, only when that folder is absent.</summary>
public sealed class SharedDataFactAttribute : FactAttribute
{
    public SharedDataFactAttribute()
    {
        if (!Directory.Exists(SharedData.Root))
            Skip = $"{SharedData.Root} is absent: the real-model tests need ../shared/data beside the repository";
    }
}
